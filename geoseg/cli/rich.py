"""Rich renderings of the CLI: its two consoles, progress bars, reports and score tables.

Only the CLI imports this module; the library reports through plain callbacks
(`geoseg.progress.Progress`, `geoseg.training.progress.TrainProgress`) and returns plain objects
(`geoseg.pipeline.record.RunReport`, `geoseg.training.evaluate.EvaluationReport`, ...).
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

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

if TYPE_CHECKING:
    from geoseg.models.package import ModelPackage
    from geoseg.training.evaluate import EvaluationReport
    from geoseg.training.progress import EpochReport
    from geoseg.vectorize import VectorizeResult

err_console = Console(stderr=True, soft_wrap=True)
out_console = Console(soft_wrap=True)


class RichProgress:
    """Rich progress bars per scene: tiles done / total and pixels per second."""

    def __init__(self, console: Console):
        self._progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("tiles"),
            TextColumn("{task.fields[rate]}"),
            TimeElapsedColumn(),
            console=console,
            transient=False,
        )
        self._tasks: dict[str, Any] = {}
        self._px_per_tile: dict[str, float] = {}
        self._started: dict[str, float] = {}

    def __enter__(self) -> RichProgress:
        self._progress.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *exc: object) -> None:
        if exc_type is not None:  # a failed run: clear the bars so the error line stands alone
            self._progress.live.transient = True
        self._progress.stop()

    def scene_started(self, scene: str, total_tiles: int, window_px: int) -> None:
        self._tasks[scene] = self._progress.add_task(scene, total=total_tiles, rate="")
        self._px_per_tile[scene] = window_px / max(total_tiles, 1)
        self._started[scene] = time.perf_counter()

    def tiles_done(self, scene: str, n: int) -> None:
        task = self._tasks[scene]
        self._progress.advance(task, n)
        done = self._progress.tasks[task].completed
        elapsed = time.perf_counter() - self._started[scene]
        rate = done * self._px_per_tile[scene] / elapsed if elapsed > 0 else 0.0
        self._progress.update(task, rate=f"{rate / 1e6:.2f} Mpx/s")

    def stage(self, scene: str, stage: str) -> None:
        self._progress.update(self._tasks[scene], description=f"{scene}: {stage}")

    def scene_finished(self, scene: str) -> None:
        if scene in self._tasks:
            self._progress.update(self._tasks[scene], description=f"{scene}: done")


class RichBlockProgress:
    """The ``on_block`` callback of `geoseg vectorize`: one transient bar of blocks done.

    The bar is shown once work runs, so an early error stays one clean line.
    """

    def __init__(self, console: Console):
        columns = (TextColumn("vectorizing"), BarColumn(), MofNCompleteColumn())
        self._bar = Progress(*columns, TextColumn("blocks"), console=console, transient=True)
        self._task = self._bar.add_task("blocks", total=None)
        self._started = False

    def __enter__(self) -> RichBlockProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._started:
            self._bar.stop()

    def __call__(self, done: int, total: int) -> None:
        if not self._started:
            self._bar.start()
            self._started = True
        self._bar.update(self._task, completed=done, total=total)


def mosaic_summary(record: dict[str, Any]) -> str:
    """One line on a mosaic: grid, polygons, each scene's share and the AOI left uncovered."""
    height, width = record["shape"]
    taken = sum(record["source_px"].values()) or 1
    shares = ", ".join(f"{name} {100 * n / taken:.0f}%" for name, n in record["source_px"].items())
    uncovered = 100 * record["nodata_in_aoi_px"] / (record["aoi_px"] or 1)
    return (
        f"{record['crs']}, {width} x {height} px, {record['polygons']} polygons; pixels from "
        f"{shares}; {uncovered:.1f}% of the AOI without a clear scene"
    )


def print_report(report: Any, console: Console) -> None:
    """Output paths and the one-line summary of a run (`geoseg.pipeline.record.RunReport`)."""
    from geoseg.io.outputs import classes_from_tags

    for scene in report.scenes:
        console.print(f"[bold]{scene.scene}[/]")
        for kind, path in scene.outputs.items():
            console.print(f"  {kind:<11} {path}")
    if report.mosaic is not None:
        console.print(f"mosaic        {report.mosaic['path']}")
        console.print(f"  {mosaic_summary(report.mosaic)}", highlight=False)
    console.print(f"run record    {report.run_json}")
    found: dict[int, int] = {}
    for scene in report.scenes:
        for k, v in scene.class_px.items():
            found[int(k)] = found.get(int(k), 0) + v
    names = {}
    if report.scenes:
        names = {
            c.id: c.name for c in classes_from_tags(Path(report.scenes[0].outputs["classes"])) or []
        }
    total = sum(found.values()) or 1
    classes_text = ", ".join(
        f"{names.get(k, k)} {100 * v / total:.1f}%" for k, v in sorted(found.items())
    )
    polygons = sum(s.polygons for s in report.scenes)
    console.print(
        f"[green]done[/] {len(report.scenes)} scene(s) in {report.seconds:.1f}s: "
        f"{report.pixels_per_second / 1e6:.2f} Mpx/s predicted, {polygons} polygons, "
        f"classes found: {classes_text}",
        highlight=False,
    )


def print_vectorized(result: VectorizeResult, seconds: float, console: Console) -> None:
    """The one-line summary of `geoseg vectorize`: polygons, blocks, workers, classes."""
    where = f"{result.dask_workers} Dask workers" if result.dask_workers else "this process"
    per_class = ", ".join(
        f"{name} {result.polygons_per_class[cid]} ({result.area_m2_per_class[cid] / 1e6:.3g} km²)"
        for cid, name in sorted(result.class_names.items())
        if result.polygons_per_class.get(cid)
    )
    console.print(
        f"[green]wrote[/] {result.n_polygons} polygons to {result.path} (+ .qml) in "
        f"{seconds:.1f}s: {result.blocks} block(s) on {where}; {per_class}",
        highlight=False,
        soft_wrap=True,
    )


def print_package(pkg: ModelPackage, console: Console) -> None:
    """`geoseg model info`: a package's metadata, bands and classes as tables, then metrics."""
    meta = pkg.metadata
    console.print(f"[bold]{meta.name}[/]  {pkg.path}")
    console.print(f"sha256        {pkg.sha256}")
    console.print(f"architecture  {meta.architecture.name} {meta.architecture.args}")
    console.print(f"input         {len(meta.bands)} bands, {meta.dtype}, GSD {meta.gsd_m:g} m")
    console.print(
        f"tiles         {meta.tile.size_px} px, overlap {meta.tile.overlap_px} px, "
        f"batch {meta.tile.batch_size}"
    )
    bands = Table("band", "index", "mean", "std", title="bands and normalization")
    for b, m, s in zip(meta.bands, meta.normalization.mean, meta.normalization.std, strict=True):
        bands.add_row(b.name, str(b.index), f"{m:.2f}", f"{s:.2f}")
    console.print(bands)
    classes = Table("id", "class", "colour", title="classes")
    iou = meta.metrics.get("validation_iou", {})
    if iou:
        classes.add_column("val IoU")
    for c in meta.classes:
        row = [str(c.id), c.name, f"[{c.color}]■■[/] {c.color}"]
        if iou:
            row.append(f"{iou.get(c.name, float('nan')):.3f}")
        classes.add_row(*row)
    console.print(classes)
    for key, value in meta.metrics.items():
        if not isinstance(value, dict):
            console.print(f"{key:<28} {value:.4f}" if isinstance(value, float) else value)
    if meta.training:
        short = {k: v for k, v in meta.training.items() if k != "history"}
        console.print(f"training      {json.dumps(short)}")


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
        validated = (
            "no validation (refit)"
            if not report.validated
            else f"val loss {report.val_loss:.4f}  val mIoU {report.val_miou:.4f}  "
            f"val OA {report.val_overall_accuracy:.4f}"
        )
        self._console.print(
            f"epoch {report.epoch:3d}/{self._epochs}  loss {report.train_loss:.4f}  "
            f"{validated}  lr {report.lr:.2g}  {report.seconds:.1f}s{mark}",
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


def objects_table(report: EvaluationReport) -> Table:
    """Object counts, precision, recall and F1 per class (one-to-one matches at IoU >= 0.5)."""
    table = Table(title="objects (matched at IoU >= 0.5)")
    table.add_column("class")
    for name in ("predicted", "reference", "matched", "precision", "recall", "F1"):
        table.add_column(name, justify="right")
    for o in report.objects:
        table.add_row(
            o.name,
            f"{o.predicted:,}",
            f"{o.reference:,}",
            f"{o.matched:,}",
            _fmt(o.precision),
            _fmt(o.recall),
            _fmt(o.f1),
        )
    return table


def _nanmean(values: Any) -> float:
    finite = [float(v) for v in values if not math.isnan(v)]
    return sum(finite) / len(finite) if finite else float("nan")


def _fmt(value: float) -> str:
    return "-" if math.isnan(value) else f"{value:.3f}"
