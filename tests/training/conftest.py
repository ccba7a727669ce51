"""Fixtures of the training tests: synthetic training scenes and a small hand-made pair."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from geoseg.synthetic import write_synthetic_scene
from tests.support.training import write_raster


@pytest.fixture(scope="session")
def scenes(tmp_path_factory: pytest.TempPathFactory):
    """Three 256 px synthetic scenes (seeds 1, 2, 3): train on two, evaluate on the third."""
    root = tmp_path_factory.mktemp("train")
    return [write_synthetic_scene(root / f"s{seed}", size_px=256, seed=seed) for seed in (1, 2, 3)]


@pytest.fixture
def small_pair(tmp_path: Path) -> tuple[Path, Path, np.ndarray, np.ndarray]:
    """A 40x60 px 2-band image and labels with values 0 (nodata), 1, 2, 3."""
    rng = np.random.default_rng(0)
    labels = np.zeros((40, 60), dtype=np.uint8)
    labels[:, 10:30] = 2
    labels[:, 30:] = 1
    labels[5:9, 40:44] = 3
    image = (rng.integers(100, 200, (2, 40, 60)) + labels * 100).astype(np.uint16)
    return (
        write_raster(tmp_path / "image.tif", image),
        write_raster(tmp_path / "labels.tif", labels),
        image,
        labels,
    )
