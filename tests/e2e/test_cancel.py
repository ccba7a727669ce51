"""Ctrl-C during `geoseg run`: exit 130, nothing under final names; a rerun equals a clean run."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import numpy as np
import pytest
import rasterio

from tests.support.cli import geoseg_cli, start_run_until_predicting

pytestmark = pytest.mark.slow


def read(path: Path) -> np.ndarray:
    with rasterio.open(path) as ds:
        return ds.read(1)


def test_cancelled_run_leaves_nothing_and_rerun_matches(tmp_path: Path, demo_model: Path) -> None:
    from geoseg.synthetic import write_synthetic_scene

    scene = write_synthetic_scene(tmp_path / "in", size_px=1536, seed=13)
    args = [
        "run", "--aoi", scene.aoi_path, "--scenes", scene.image_path, "--model", demo_model,
        "--device", "cpu", "--tile-size", "128", "--overlap", "16", "--batch-size", "2",
    ]  # fmt: skip
    out = tmp_path / "out"
    proc = start_run_until_predicting(args, out, capture=True)
    time.sleep(1.0)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr
    assert "cancelled" in stderr
    assert sorted(p.name for p in out.iterdir()) == [], list(out.iterdir())

    geoseg_cli(*args, "--out", out, check=True)  # rerun into the same folder
    clean = tmp_path / "clean"
    geoseg_cli(*args, "--out", clean, check=True)
    for name in ("classes.tif", "confidence.tif"):
        np.testing.assert_array_equal(read(out / "scene" / name), read(clean / "scene" / name))
    assert not [p for p in out.rglob("*") if "partial" in p.name]
