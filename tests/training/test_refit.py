"""Refit: the validated run's epochs and learning rates replayed on every block."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from geoseg.errors import ConfigError
from geoseg.models.package import load_package, save_package
from geoseg.training.loop import train
from geoseg.training.refit import epoch_lrs
from tests.support.cli import geoseg_cli
from tests.support.training import tiny_settings


def test_each_epoch_runs_at_the_lr_recorded_after_the_one_before() -> None:
    history = [{"lr": 1e-3}, {"lr": 5e-4}, {"lr": 5e-4}, {"lr": 2.5e-4}]
    assert epoch_lrs(1e-3, history, 4) == (1e-3, 1e-3, 5e-4, 5e-4)
    assert epoch_lrs(1e-3, history, 1) == (1e-3,)


SCHEDULE = [2e-3, 1e-3, 1e-3, 4e-4]
"""The lr recorded after each epoch of the validated run (set below, so that the replayed
schedule is known whatever the tiny run's plateaus did)."""


@pytest.fixture
def validated(scenes, tmp_path: Path) -> Path:
    """A tiny validated run of 4 epochs, its history's lrs set to `SCHEDULE`, best epoch 3."""
    torch.set_num_threads(1)
    out = tmp_path / "validated.geoseg"
    train(tiny_settings(scenes, out, epochs=4, steps_per_epoch=2, early_stopping=0))
    package = load_package(out)
    training = package.metadata.training
    history = [{**h, "lr": lr} for h, lr in zip(training["history"], SCHEDULE, strict=True)]
    meta = package.metadata.model_copy(
        update={"training": {**training, "history": history, "best_epoch": 3}}
    )
    save_package(out, package.build(), meta)
    return out


def test_a_refit_replays_the_best_epochs_on_every_block(
    scenes, tmp_path: Path, validated: Path
) -> None:
    source = load_package(validated).metadata
    best = 3
    out = tmp_path / "refit.geoseg"
    proc = geoseg_cli(
        "train",
        *("--image", scenes[0].image_path, "--image", scenes[1].image_path),
        *("--labels", scenes[0].labels_path, "--labels", scenes[1].labels_path),
        *("--arch", "unet", "--width", 0.125, "--steps-per-epoch", 2, "--batch-size", 8),
        *("--tile-size", 64, "--val-block", 64, "--lr", 3e-3, "--threads", 1),
        *("--device", "cpu", "--early-stopping", 0),
        *("--refit", validated, "--out", out),
        check=True,
    )
    assert f"epoch   {best}/{best}" in proc.stderr and "no validation (refit)" in proc.stderr
    meta = load_package(out).metadata
    record = meta.training["refit"]
    assert record["epochs"] == best == meta.training["epochs_run"]
    replayed = [h["lr"] for h in meta.training["history"]]  # the optimizer's, each epoch
    assert replayed == record["lrs"] == [3e-3, 2e-3, 1e-3]
    # nothing held out: every block the validated run split is training data now
    for ours, theirs in zip(meta.training["scenes"], source.training["scenes"], strict=True):
        assert ours["val_blocks"] == 0
        assert ours["train_blocks"] == theirs["train_blocks"] + theirs["val_blocks"]
    assert sum(meta.training["val_pixels"].values()) == 0
    assert meta.metrics == source.metrics  # the validated run's, as the record says
    assert meta.weights_sha256 != source.weights_sha256


def test_a_refit_refuses_other_settings_and_refits(scenes, tmp_path: Path, validated: Path) -> None:
    base = {"epochs": 4, "steps_per_epoch": 2, "early_stopping": 0}
    other = tiny_settings(scenes, tmp_path / "x.geoseg", refit=validated, loss="dice", **base)
    with pytest.raises(ConfigError, match=r"other settings \(loss 'ce' vs 'dice'\)"):
        train(other)
    refit = tmp_path / "refit.geoseg"
    train(tiny_settings(scenes, refit, refit=validated, **base))
    with pytest.raises(ConfigError, match="itself a refit"):
        train(tiny_settings(scenes, tmp_path / "y.geoseg", refit=refit, **base))
    package = load_package(validated)
    training = {**package.metadata.training, "best_epoch": 9}  # 4 epochs in its history
    short = tmp_path / "short.geoseg"
    save_package(short, package.build(), package.metadata.model_copy(update={"training": training}))
    with pytest.raises(ConfigError, match="history has 4 epochs, fewer than its best epoch 9"):
        train(tiny_settings(scenes, tmp_path / "z.geoseg", refit=short, **base))


def test_a_start_file_spelt_another_way_is_the_same_setting(
    scenes, tmp_path: Path, validated: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    base = {"epochs": 2, "steps_per_epoch": 1, "early_stopping": 0}
    monkeypatch.chdir(tmp_path)
    tuned = tmp_path / "tuned.geoseg"
    train(tiny_settings(scenes, tuned, init_weights=Path(validated.name), **base))
    absolute = validated.resolve()
    refit = train(
        tiny_settings(scenes, tmp_path / "r.geoseg", refit=tuned, init_weights=absolute, **base)
    )
    assert load_package(refit.package).metadata.training["refit"]["sha256"]
