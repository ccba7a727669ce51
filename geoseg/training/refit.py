"""Refit: train again on every block, replaying the schedule a validated run chose.

With little labelled data the 20 % of blocks held out for validation are a real loss. Once a
validated run has picked its best epoch, `geoseg train --refit PACKAGE` trains the same
settings on all blocks (nothing held out) for exactly that many epochs, each at the learning
rate the validated run used in it (its schedule, replayed), and packages the last
epoch. Nothing is validated in a refit: the package carries the validated run's metrics and
says so.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from geoseg.errors import ConfigError
from geoseg.models.package import load_package
from geoseg.training.settings import TrainSettings

MAY_DIFFER = frozenset(
    {
        "image",
        "labels",
        "window",
        "out",
        "name",
        "seed",
        "epochs",
        "early_stopping",
        "monitor",
        "val_fraction",
        "val_block",
        "lr_schedule",
        "lr_patience",
        "lr_factor",
        "device",
        "checkpoint_dir",
        "resume",
        "threads",
        "refit",
    }
)
"""Settings a refit may change: the data, where things go, and what only validation uses.
Everything else (model, loss, sampling, augmentation, batch, lr) must match the validated run,
or its best epoch count would say nothing about this one."""


@dataclass(frozen=True)
class RefitPlan:
    """What a refit replays: the learning rate of each epoch, and what to record."""

    package: Path
    package_sha256: str
    lrs: tuple[float, ...]
    metrics: dict[str, Any]

    @property
    def epochs(self) -> int:
        return len(self.lrs)

    def record(self) -> dict[str, Any]:
        """The package's account of where its epochs and metrics come from."""
        return {
            "package": str(self.package),
            "sha256": self.package_sha256,
            "epochs": self.epochs,
            "lrs": list(self.lrs),
            "metrics": "the validated run's (a refit holds nothing out)",
        }


def epoch_lrs(first_lr: float, history: list[dict[str, Any]], epochs: int) -> tuple[float, ...]:
    """The learning rate in force during each of the first ``epochs`` epochs of a run.

    A history row records the lr after the epoch's plateau step, so epoch 1 ran at
    ``first_lr`` and epoch k > 1 at the lr recorded for epoch k - 1."""
    recorded = [float(row["lr"]) for row in history]
    return tuple([first_lr, *recorded][:epochs])


def refit_plan(settings: TrainSettings) -> RefitPlan:
    """The plan for ``settings.refit``; refuses a package whose settings differ or that
    records no validated best epoch."""
    assert settings.refit is not None
    package = load_package(settings.refit)
    training = package.metadata.training
    source = training.get("settings") or {}
    best = int(training.get("best_epoch") or 0)
    if not source or best < 1 or training.get("refit"):
        raise ConfigError(
            f"{settings.refit}: not a validated geoseg training run (no settings or best epoch, "
            "or itself a refit); refit from the package of a run with validation"
        )
    ours = _comparable(settings.model_dump(mode="json"))
    theirs = _comparable({k: source.get(k, _default(k)) for k in ours})  # keys newer than it
    differ = sorted(k for k in ours if k not in MAY_DIFFER and theirs[k] != ours[k])
    if differ:
        shown = ", ".join(f"{k} {theirs[k]!r} vs {ours[k]!r}" for k in differ)
        raise ConfigError(
            f"{settings.refit}: the validated run was trained with other settings ({shown}); "
            "refit with the config and options of that run"
        )
    lrs = epoch_lrs(float(source["lr"]), training.get("history") or [], best)
    if len(lrs) < best:
        raise ConfigError(
            f"{settings.refit}: its history has {len(lrs) - 1} epochs, fewer than its best "
            f"epoch {best}; refit from a package written by geoseg train"
        )
    return RefitPlan(
        package=Path(settings.refit),
        package_sha256=package.sha256,
        lrs=lrs,
        metrics=package.metadata.metrics,
    )


def _default(key: str) -> Any:
    """A setting's default as JSON, for packages written before the setting existed."""
    value = TrainSettings.model_fields[key].get_default(call_default_factory=True)
    return getattr(value, "value", value)


START_FILES = ("encoder_weights", "init_weights")
"""Settings naming a file: compared as resolved paths, however they were spelt."""


def _comparable(values: dict[str, Any]) -> dict[str, Any]:
    """``values`` with the start-weight files resolved (relative ones from this folder)."""
    return {
        k: str(Path(v).resolve()) if k in START_FILES and isinstance(v, str) else v
        for k, v in values.items()
    }
