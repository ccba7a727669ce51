"""Rich renderings for `geoseg train` and `geoseg evaluate`: progress bars and score tables.

Only the CLI imports this module; the library reports through plain callbacks
(`geoseg.train.TrainProgress`) and returns plain objects (`geoseg.evaluate.EvaluationReport`).
"""

from __future__ import annotations

import math
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from geoseg.training.evaluate import EvaluationReport
from geoseg.training.loop import EpochReport


class RichTrainProgress:
    """One progress bar per epoch (steps, running loss) and one line per finished epoch."""

    def __init__(self, console: Console):
        self._console = console
        self._progress = Progress(
            TextColumn("epoch {task.fields[epoch]}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]}"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=console,
            transient=True,
        )
        self._task: Any = None
        self._epochs = 0
        self._steps = 0
        self._running = 0.0

    def __enter__(self) -> RichTrainProgress:
        self._progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._progress.stop()

    def started(self, first_epoch: int, epochs: int, steps_per_epoch: int) -> None:
        self._epochs, self._steps = epochs, steps_per_epoch
        if first_epoch > 1:
            self._console.print(f"resuming at epoch {first_epoch}/{epochs}")

    def step(self, epoch: int, step: int, loss: float) -> None:
        if step == 1 or self._task is None:
            if self._task is not None:
                self._progress.remove_task(self._task)
            self._running = loss
            self._task = self._progress.add_task(
                "train", total=self._steps, epoch=f"{epoch}/{self._epochs}", loss="-"
            )
        self._running = 0.9 * self._running + 0.1 * loss
        self._progress.update(self._task, advance=1, loss=f"{self._running:.4f}")

    def epoch_done(self, report: EpochReport) -> None:
        if self._task is not None:
            self._progress.remove_task(self._task)
            self._task = None
        mark = " [green]best[/]" if report.best else ""
        self._console.print(
            f"epoch {report.epoch:3d}/{self._epochs}  loss {report.train_loss:.4f}  "
            f"val loss {report.val_loss:.4f}  val mIoU {report.val_miou:.4f}  "
            f"val OA {report.val_overall_accuracy:.4f}  lr {report.lr:.2g}  "
            f"{report.seconds:.1f}s{mark}",
            highlight=False,
        )


def evaluation_table(report: EvaluationReport, title: str) -> Table:
    """Per-class IoU, precision, recall, F1 and support, then mIoU, OA and macro-F1."""
    s = report.scores
    table = Table(title=title, show_footer=False)
    table.add_column("class")
    for name in ("IoU", "precision", "recall", "F1", "support"):
        table.add_column(name, justify="right")
    for i, c in enumerate(report.classes):
        table.add_row(
            f"[{c.color}]■[/] {c.name}",
            _fmt(s.iou[i]),
            _fmt(s.precision[i]),
            _fmt(s.recall[i]),
            _fmt(s.f1[i]),
            f"{int(s.support[i]):,}",
        )
    table.add_section()
    table.add_row(
        "mean (mIoU, macro-F1)",
        _fmt(s.miou),
        _fmt(_nanmean(s.precision)),
        _fmt(_nanmean(s.recall)),
        _fmt(s.macro_f1),
        f"{report.scored_px:,}",
    )
    table.caption = f"overall accuracy {_fmt(s.overall_accuracy)}"
    return table


def _nanmean(values: Any) -> float:
    finite = [float(v) for v in values if not math.isnan(v)]
    return sum(finite) / len(finite) if finite else float("nan")


def _fmt(value: float) -> str:
    return "-" if math.isnan(value) else f"{value:.3f}"
