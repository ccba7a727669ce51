"""Training test helpers: small hand-made rasters and polygons, the tiny training budget."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyogrio.raw
import pytest
import shapely
from affine import Affine

from geoseg.classes import ClassInfo
from geoseg.training.settings import TrainSettings, load_train_settings
from tests.support.cli import SHARED_DATA
from tests.support.rasters import write_tif

CRS = "EPSG:32633"
TRANSFORM = Affine(10, 0, 500000, 0, -10, 5001000)
THREE = (
    ClassInfo(1, "water", "#0000ff"),
    ClassInfo(2, "forest", "#00ff00"),
    ClassInfo(3, "urban", "#ff0000"),
)

ZION = SHARED_DATA / "zion"
needs_zion = pytest.mark.skipif(
    not (ZION / "image.tif").exists(),
    reason=f"the Zion Landsat scene is not at {ZION} (it lives outside the repository, in "
    "../shared/data/zion); these tests need it",
)

# A tiny U-Net (0.5 M parameters) trained for 64 steps of 8 tiles of 64 px: ~15 s on one core.
TINY = {
    "arch": "unet",
    "width": 0.125,
    "epochs": 8,
    "steps_per_epoch": 8,
    "batch_size": 8,
    "tile_size": 64,
    "val_block": 64,
    "lr": 3e-3,
    "threads": 1,
    "device": "cpu",
}


def tiny_settings(scenes, out: Path, **changes) -> TrainSettings:
    """`TINY` settings on the first two of ``scenes`` (synthetic scenes), with ``changes``."""
    values = {
        "image": [s.image_path for s in scenes[:2]],
        "labels": [s.labels_path for s in scenes[:2]],
        "out": out,
        **TINY,
        **changes,
    }
    return load_train_settings(None, values)


def write_raster(
    path: Path, data: np.ndarray, *, nodata: float | None = None, transform: Affine = TRANSFORM
) -> Path:
    """A GeoTIFF of ``data`` ((bands,) rows, cols) on the UTM 33N grid of `TRANSFORM`."""
    return write_tif(path, data, transform=transform, crs=CRS, nodata=nodata)


def write_polygons(path: Path, geoms: list, values: list, column: str = "class", crs=CRS) -> Path:
    """A one-layer vector file of ``geoms`` with one attribute ``column`` of ``values``."""
    kind = "Polygon" if all(g.geom_type == "Polygon" for g in geoms) else "MultiPolygon"
    pyogrio.raw.write(
        path,
        geometry=shapely.to_wkb(np.array(geoms, dtype=object)),
        field_data=[np.array(values, dtype=object if isinstance(values[0], str) else None)],
        fields=[column],
        crs=crs,
        geometry_type=kind,
    )
    return path
