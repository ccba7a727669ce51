"""Learning-rate schedules: the plateau default and a fixed-length cosine."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from geoseg.errors import ConfigError
from geoseg.models.package import load_package
from geoseg.training.loop import build_scheduler, train
from tests.support.training import tiny_settings


def cosine_lr(lr: float, epochs: int, k: int) -> float:
    """The lr of epoch k (1-based) of a cosine over ``epochs``, from the formula."""
    return lr * (1 + math.cos(math.pi * (k - 1) / epochs)) / 2


def test_cosine_follows_its_formula_to_zero(scenes, tmp_path: Path) -> None:
    settings = tiny_settings(scenes, tmp_path / "m.geoseg", lr_schedule="cosine", epochs=5)
    optimizer = torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))], lr=settings.lr)
    scheduler = build_scheduler(optimizer, settings)
    seen = []
    for _ in range(5):
        seen.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert seen == pytest.approx([cosine_lr(settings.lr, 5, k) for k in range(1, 6)])
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.0, abs=1e-12)


def test_a_cosine_run_records_its_schedule_and_is_resumed_only_at_its_length(
    scenes, tmp_path: Path
) -> None:
    torch.set_num_threads(1)
    out = tmp_path / "m.geoseg"
    settings = tiny_settings(
        scenes, out, lr_schedule="cosine", epochs=3, steps_per_epoch=1, early_stopping=0
    )
    train(settings)
    training = load_package(out).metadata.training
    # the history holds the lr after each epoch's step: the next epoch's
    lrs = [h["lr"] for h in training["history"]]
    assert lrs == pytest.approx([cosine_lr(settings.lr, 3, k) for k in (2, 3, 4)], abs=1e-12)
    assert training["optimizer"] == f"Adam lr={settings.lr} + cosine to 0 over 3 epochs"
    # the length shapes every epoch's lr: a longer resume would be another schedule
    longer = settings.model_copy(update={"resume": True, "epochs": 4})
    with pytest.raises(ConfigError, match="different schedule_epochs"):
        train(longer)
    with pytest.raises(ConfigError, match="different lr_schedule"):
        train(settings.model_copy(update={"resume": True, "lr_schedule": "plateau"}))
