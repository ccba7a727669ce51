"""Where one scene raster lands on the mosaic grid, and reading a row band of it there.

A scene on the mosaic's own grid shifted by whole pixels (same CRS and pixel size, origin on
the mosaic's pixel lines: the usual case for scenes of one UTM zone) is read directly, window by
window. Any other scene is read through a GDAL warped view onto the mosaic grid with nearest
neighbour, limited to the rows and columns its footprint can reach, so a scene costs memory
and time only where it lies.
"""

from __future__ import annotations

import math
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rasterio
import rasterio.warp
from rasterio.enums import Resampling
from rasterio.vrt import WarpedVRT
from rasterio.windows import Window

from geoseg.classes import CLASS_NODATA
from geoseg.geo.scene import SceneGrid
from geoseg.mosaic.grid import whole_pixel_shift

WARP_MEM_MB = 16
"""GDAL's warp buffer per warped view (its default is 64 MB, for each of them)."""


@dataclass(frozen=True)
class Placement:
    """A scene's footprint on the mosaic grid (half-open rows and columns, clipped to the
    grid) and, when its grid is the mosaic's shifted by whole pixels, that shift (rows, cols)
    of its pixel (0, 0)."""

    rows: tuple[int, int]
    cols: tuple[int, int]
    shift: tuple[int, int] | None

    def reaches(self, r0: int, r1: int) -> bool:
        """Whether the footprint has pixels in mosaic rows [r0, r1)."""
        return self.rows[0] < r1 and self.rows[1] > r0 and self.cols[0] < self.cols[1]


def place(grid: SceneGrid, src: rasterio.DatasetReader) -> Placement:
    """The scene's `Placement`: exact for a whole-pixel shift, else from its bounds in the
    mosaic CRS (densified, so a reprojected edge's bulge is inside) plus one pixel of margin."""
    shift = whole_pixel_shift(grid, SceneGrid(src.crs, src.transform, src.height, src.width))
    if shift is not None:
        r, c = shift
        return Placement(
            (max(0, r), min(grid.height, r + src.height)),
            (max(0, c), min(grid.width, c + src.width)),
            shift,
        )
    left, bottom, right, top = rasterio.warp.transform_bounds(
        src.crs, grid.crs, *src.bounds, densify_pts=21
    )
    inverse = ~grid.transform
    c_a, r_a = inverse @ (left, top)
    c_b, r_b = inverse @ (right, bottom)
    r0, r1 = math.floor(min(r_a, r_b)) - 1, math.ceil(max(r_a, r_b)) + 1
    c0, c1 = math.floor(min(c_a, c_b)) - 1, math.ceil(max(c_a, c_b)) + 1
    return Placement((max(0, r0), min(grid.height, r1)), (max(0, c0), min(grid.width, c1)), None)


def warped_view(src: rasterio.DatasetReader, grid: SceneGrid, nodata: int | None) -> WarpedVRT:
    """The scene on the mosaic grid, nearest neighbour (``nodata`` None: fill with 0).

    GDAL's default transformer interpolates between exactly transformed points (0.125 px of
    error allowed), which picks the neighbouring pixel for some centres near a pixel edge;
    a tolerance of 1e-6 px transforms (nearly) every centre, so each pixel is its true nearest.
    """
    return WarpedVRT(
        src,
        crs=grid.crs,
        transform=grid.transform,
        width=grid.width,
        height=grid.height,
        resampling=Resampling.nearest,
        src_nodata=nodata,
        nodata=nodata if nodata is not None else 0,
        warp_mem_limit=WARP_MEM_MB,
        tolerance=1e-6,  # pixel centres transformed (close to) exactly, not interpolated
    )


def read_rows(
    src: rasterio.DatasetReader | WarpedVRT,
    placement: Placement,
    rows: tuple[int, int],
    *,
    fill: int,
) -> np.ndarray:
    """Mosaic rows [r0, r1) of the scene over its footprint's columns, as an
    (r1 - r0, c1 - c0) array with ``fill`` in the rows it does not reach; ``src`` is the scene
    itself for a whole-pixel shift, else its `warped_view`."""
    r0, r1 = rows
    c0, c1 = placement.cols
    out = np.full((r1 - r0, max(0, c1 - c0)), fill, dtype=src.dtypes[0])
    a, b = max(r0, placement.rows[0]), min(r1, placement.rows[1])
    if a >= b or c0 >= c1:
        return out
    if placement.shift is None:
        window = Window(c0, a, c1 - c0, b - a)
    else:
        sr, sc = placement.shift
        window = Window(c0 - sc, a - sr, c1 - c0, b - a)
    out[a - r0 : b - r0] = src.read(1, window=window)
    return out


class SceneReader:
    """One scene's class and confidence rasters read on the mosaic grid. Files are opened on
    the first read and closed by `close` (after the scene's last band), so a mosaic of many
    scenes holds only the files of the scenes its current band crosses."""

    def __init__(self, classes: Path, confidence: Path, grid: SceneGrid) -> None:
        self._paths = (classes, confidence)
        self._grid = grid
        with rasterio.open(classes) as src:
            self.placement = place(grid, src)
        self._stack: ExitStack | None = None
        self._readers: tuple[rasterio.DatasetReader | WarpedVRT, ...] = ()

    def read(self, rows: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
        """Classes (255 where none) and confidence (0) of mosaic ``rows`` over the footprint's
        columns (`Placement.cols`)."""
        if self._stack is None:
            self._stack = ExitStack()
            opened = [self._stack.enter_context(rasterio.open(p)) for p in self._paths]
            if self.placement.shift is None:
                opened = [
                    self._stack.enter_context(warped_view(opened[0], self._grid, CLASS_NODATA)),
                    self._stack.enter_context(warped_view(opened[1], self._grid, None)),
                ]
            self._readers = tuple(opened)
        classes = read_rows(self._readers[0], self.placement, rows, fill=CLASS_NODATA)
        confidence = read_rows(self._readers[1], self.placement, rows, fill=0)
        return classes, confidence

    def close(self) -> None:
        """Close the files (a later `read` opens them again)."""
        if self._stack is not None:
            self._stack.close()
            self._stack, self._readers = None, ()
