"""Checkpoints: a resumed run ends exactly where a straight one does; mismatches are refused."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from geoseg.errors import ConfigError
from geoseg.models.package import load_package
from geoseg.training.loop import train
from tests.support.cli import geoseg_cli
from tests.support.training import TINY, tiny_settings


@pytest.mark.parametrize("extra", [{}, {"ema_decay": 0.9}], ids=["plain", "weight-average"])
def test_resume_continues_exactly_from_the_last_epoch(scenes, tmp_path: Path, extra: dict) -> None:
    torch.set_num_threads(1)
    short = {"epochs": 3, "steps_per_epoch": 3, "sampling": "balanced", "loss": "focal", **extra}
    straight = train(tiny_settings(scenes, tmp_path / "a.geoseg", **short))
    # the same run, stopped after 2 epochs, then resumed by the CLI up to epoch 3
    first = train(tiny_settings(scenes, tmp_path / "b.geoseg", **{**short, "epochs": 2}))
    assert [r.epoch for r in first.history] == [1, 2]
    checkpoint = tmp_path / "b.geoseg.ckpt" / "last.safetensors"
    assert checkpoint.exists()
    args = [
        f"--{k.replace('_', '-')}={v}" for k, v in {**TINY, **short}.items() if k not in ("epochs",)
    ]
    proc = geoseg_cli(
        "train",
        *("--image", scenes[0].image_path, "--image", scenes[1].image_path),
        *("--labels", scenes[0].labels_path, "--labels", scenes[1].labels_path),
        *("--out", tmp_path / "b.geoseg", "--epochs", 3, "--resume"),
        *args,
        check=True,
    )
    assert "resuming at epoch 3/3" in proc.stderr
    assert "epoch   1/3" not in proc.stderr and "epoch   3/3" in proc.stderr
    a, b = load_package(tmp_path / "a.geoseg"), load_package(tmp_path / "b.geoseg")
    assert [h["epoch"] for h in b.metadata.training["history"]] == [1, 2, 3]
    # model, optimizer, scheduler and random states were all restored: identical weights
    assert a.metadata.weights_sha256 == b.metadata.weights_sha256
    losses = [h["val_loss"] for h in a.metadata.training["history"]]
    assert [h["val_loss"] for h in b.metadata.training["history"]] == pytest.approx(losses)
    assert straight.best_epoch == b.metadata.training["best_epoch"]


def test_resume_refuses_other_settings_or_a_missing_checkpoint(scenes, tmp_path: Path) -> None:
    torch.set_num_threads(1)
    settings = tiny_settings(scenes, tmp_path / "m.geoseg", epochs=1, steps_per_epoch=1)
    with pytest.raises(ConfigError, match="no checkpoint to resume from"):
        train(settings.model_copy(update={"resume": True}))
    train(settings)
    changed = settings.model_copy(update={"resume": True, "epochs": 2, "loss": "dice"})
    with pytest.raises(ConfigError, match="different loss"):
        train(changed)


def test_resume_finds_the_same_files_however_their_paths_are_spelt(
    scenes, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A config given as configs/x.yaml or /repo/configs/x.yaml spells its paths differently."""
    torch.set_num_threads(1)
    settings = tiny_settings(scenes, tmp_path / "m.geoseg", epochs=1, steps_per_epoch=1)
    train(settings)
    monkeypatch.chdir(tmp_path)
    other = {
        key: [Path(os.path.relpath(Path(p).parent / ".." / Path(p).parent.name / Path(p).name))
              for p in getattr(settings, key)]
        for key in ("image", "labels")
    }  # fmt: skip
    assert other["image"][0] != str(settings.image[0])
    resumed = train(settings.model_copy(update={**other, "resume": True, "epochs": 2}))
    assert [r.epoch for r in resumed.history] == [1, 2]
