"""Small class rasters with known hard cases, and writing them as GeoTIFFs (vectorize tests)."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import numpy as np
import rasterio
from affine import Affine
from scipy import ndimage

from geoseg.classes import CLASS_NODATA, ClassInfo
from geoseg.synthetic import make_landscape
from geoseg.vectorize import Connectivity

ND = CLASS_NODATA
UTM = "EPSG:32633"
TRANSFORM = Affine(10.0, 0.0, 500_000.0, 0.0, -10.0, 4_100_000.0)
PIXEL_AREA = 100.0
CLASSES = tuple(
    ClassInfo(i, name, color)
    for i, (name, color) in enumerate(
        [
            ("water", "#1f78b4"),
            ("forest", "#33a02c"),
            ("grass", "#b2df8a"),
            ("urban", "#e31a1c"),
            ("bare", "#fdbf6f"),
        ]
    )
)
CONNECTIVITIES = [Connectivity.FOUR, Connectivity.EIGHT]


def landscape() -> np.ndarray:
    """Blurred random field quantized to 5 classes, with nodata patches (~300 x 257)."""
    rng = np.random.default_rng(42)
    field = ndimage.gaussian_filter(rng.standard_normal((257, 300)), sigma=5)
    classes = np.digitize(field, np.quantile(field, [0.2, 0.4, 0.6, 0.8])).astype(np.uint8)
    classes[100:130, 40:75] = ND  # a nodata lake
    classes[:, :3] = ND  # a nodata edge strip
    classes[200, 200] = ND  # a single nodata pixel inside some region
    return classes


def checkerboard() -> np.ndarray:
    """1-pixel checks of two classes: every same-class neighbour touches only at corners."""
    rows, cols = np.indices((16, 18))
    return ((rows + cols) % 2).astype(np.uint8)


def block_checkerboard() -> np.ndarray:
    rows, cols = np.indices((24, 30))
    return ((rows // 3 + cols // 3) % 3).astype(np.uint8)


def noise() -> np.ndarray:
    """1-pixel random noise of 3 classes (64 x 64) with some nodata pixels."""
    rng = np.random.default_rng(7)
    classes = rng.integers(0, 3, (64, 64)).astype(np.uint8)
    classes[rng.random((64, 64)) < 0.05] = ND
    return classes


def single_class() -> np.ndarray:
    return np.full((20, 30), 3, dtype=np.uint8)


def ring_with_island() -> np.ndarray:
    """Class 1 ring around a class 2 hole holding a class 3 island; a nodata pixel in the ring."""
    a = np.zeros((11, 11), dtype=np.uint8)
    a[1:10, 1:10] = 1
    a[3:8, 3:8] = 2
    a[5, 5] = 3
    a[1, 5] = 1
    a[2, 2] = ND
    return a


def diagonal_touches() -> np.ndarray:
    """Regions that touch only at corners, including a corner-closed ring and nodata corners."""
    return np.array(
        [
            [1, 0, 0, 1, 0, 2, 2],
            [0, 1, 1, 0, 2, 0, 2],
            [0, 1, 1, 0, 2, 2, 0],
            [1, 0, 0, 1, 0, 0, 0],
            [0, 2, 0, ND, 0, 1, 0],
            [2, 0, 2, 0, ND, 0, 1],
            [0, 2, 0, 0, 0, 1, 0],
        ],
        dtype=np.uint8,
    )


def all_nodata() -> np.ndarray:
    return np.full((8, 9), ND, dtype=np.uint8)


def synthetic_landscape() -> np.ndarray:
    """geoseg's synthetic land cover, 500 x 600, with nodata margins (rivers, roads, towns)."""
    return make_landscape((500, 600), seed=5, nodata_margin_px=40).labels


def river() -> np.ndarray:
    """Field squares crossed edge to edge by a meandering river with a tributary and islands."""
    rows, cols = np.indices((300, 420))
    a = (1 + (rows // 40 + 2 * (cols // 40)) % 3).astype(np.uint8)
    centre = 150 + 60 * np.sin(cols / 45.0)
    a[np.abs(rows - centre) < 3] = 0
    a[(np.abs(cols - 200 - 0.3 * rows) < 2) & (rows < centre)] = 0
    a[(np.abs(rows - centre) < 1) & (cols % 50 == 25)] = 2  # one-pixel islands in the river
    a[10:14, 10:14] = ND
    return a


def holes_across_seams() -> np.ndarray:
    """A hole, an island in it and a hole in the island, all centred on a block corner."""
    a = np.full((96, 96), 1, dtype=np.uint8)
    a[20:76, 20:76] = 2
    a[40:56, 40:56] = 3
    a[47:49, 47:49] = 1
    a[0:5, 44:52] = ND
    return a


RASTERS: dict[str, Callable[[], np.ndarray]] = {
    "landscape": landscape,
    "checkerboard": checkerboard,
    "block_checkerboard": block_checkerboard,
    "noise": noise,
    "single_class": single_class,
    "ring_with_island": ring_with_island,
    "diagonal_touches": diagonal_touches,
    "all_nodata": all_nodata,
}
"""Small rasters of hard cases, each polygonized in one pass in well under a second."""

ALL_RASTERS: dict[str, Callable[[], np.ndarray]] = {
    **RASTERS,
    "synthetic_landscape": synthetic_landscape,
    "river": river,
    "holes_across_seams": holes_across_seams,
}
"""`RASTERS` and larger ones with regions across many blocks."""


def write_tif(
    path: Path,
    array: np.ndarray,
    *,
    transform: Affine = TRANSFORM,
    crs: str | None = UTM,
    nodata: float | None = ND,
) -> Path:
    """A GeoTIFF of ``array`` ((bands,) rows, cols): one band for a 2-D array."""
    data = array if array.ndim == 3 else array[None]
    with rasterio.open(
        path,
        "w",
        driver="GTiff",
        count=data.shape[0],
        height=data.shape[1],
        width=data.shape[2],
        dtype=data.dtype,
        crs=crs,
        transform=transform,
        nodata=nodata,
    ) as dst:
        dst.write(data)
    return path


def map_coordinates(
    transform: Affine, cols: np.ndarray, rows: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Map coordinates of pixel positions (col, row)."""
    a, b, c, d, e, f = tuple(transform)[:6]
    cols, rows = np.asarray(cols, dtype=np.float64), np.asarray(rows, dtype=np.float64)
    return a * cols + b * rows + c, d * cols + e * rows + f


def pixel_centres(shape: tuple[int, int], transform: Affine) -> tuple[np.ndarray, np.ndarray]:
    rows, cols = np.indices(shape)
    return map_coordinates(transform, cols + 0.5, rows + 0.5)


def gdalwarp_near(src: Path, like: Path, folder: Path, name: str) -> np.ndarray:
    """``src`` warped by GDAL's CLI onto ``like``'s grid: the reference placement (nearest,
    every pixel centre transformed exactly: ``-et 0``)."""
    with rasterio.open(like) as ds:
        left, bottom, right, top = ds.bounds
        crs, (rx, ry) = ds.crs.to_string(), ds.res
    dst = folder / f"{name}.on_mosaic.tif"
    subprocess.run(
        [shutil.which("gdalwarp") or "gdalwarp", "-q", "-overwrite", "-r", "near", "-et", "0",
         "-t_srs", crs, "-te", str(left), str(bottom), str(right), str(top),
         "-tr", str(rx), str(ry), "-dstnodata", str(CLASS_NODATA), str(src), str(dst)],
        check=True, capture_output=True,
    )  # fmt: skip
    with rasterio.open(dst) as ds:
        return ds.read(1)
