"""`train_model`: `geoseg train` as a Prefect flow (same settings, same trainer, same package).

Parameters are a training config file (YAML, as for ``geoseg train --config``) and/or the
options themselves (``options``: the names of `geoseg.training.settings.TrainSettings`, with
the values YAML or the command line would give); options win. With ``resume`` (the default
here) a rerun flow continues from the last checkpointed epoch when there is a checkpoint,
instead of starting over.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task

from flows.naming import settings_named
from geoseg.training.loop import train as train_package
from geoseg.training.progress import EpochReport
from geoseg.training.settings import TrainSettings, load_train_settings


class LogTrainProgress:
    """`geoseg.training.progress.TrainProgress` into the Prefect run log: one line per epoch."""

    def __init__(self, logger: logging.Logger | logging.LoggerAdapter[Any]):
        self._logger = logger

    def started(self, first_epoch: int, epochs: int, steps_per_epoch: int) -> None:
        self._logger.info(
            "training epochs %d..%d, %d steps each", first_epoch, epochs, steps_per_epoch
        )

    def step(self, epoch: int, step: int, loss: float) -> None:
        pass

    def epoch_done(self, report: EpochReport) -> None:
        if not report.validated:
            self._logger.info(
                "epoch %d: train loss %.4f, lr %.2g, no validation (refit) (%.1f s)",
                report.epoch,
                report.train_loss,
                report.lr,
                report.seconds,
            )
            return
        self._logger.info(
            "epoch %d: train loss %.4f, val loss %.4f, val mIoU %.3f%s (%.1f s)",
            report.epoch,
            report.train_loss,
            report.val_loss,
            report.val_miou,
            ", best so far" if report.best else "",
            report.seconds,
        )


@task(name="load-train-settings")
@settings_named
def resolve_train_settings(
    config: Path | None, options: dict[str, Any], *, resume: bool
) -> TrainSettings:
    """Validate the config file and options (a typo fails here, with the option's name).

    ``resume``: continue from the checkpoint when one exists (a first run has none).
    """
    settings = load_train_settings(config, options)
    if resume and settings.checkpoint_path.exists():
        settings = settings.model_copy(update={"resume": True})
    return settings


@task(name="train")
@settings_named
def train(settings: TrainSettings) -> Path:
    """Train and write the model package; returns its path."""
    logger = get_run_logger()
    result = train_package(settings, LogTrainProgress(logger))
    logger.info(
        "wrote %s in %.0f s (best epoch %d%s)",
        result.package,
        result.seconds,
        result.best_epoch,
        ", stopped early" if result.stopped_early else "",
    )
    return result.package


@flow(name="train-model", description="Train a segmentation model into a .geoseg package.")
def train_model(
    config: Path | None = None, options: dict[str, Any] | None = None, resume: bool = True
) -> Path:
    """Train a model from a YAML config and/or options, as ``geoseg train`` does."""
    settings = resolve_train_settings(config, options or {}, resume=resume)
    return train(settings)
