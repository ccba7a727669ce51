"""Rendering: any pixel window of a scene, painted layer by layer, and whole scenes in memory.

`render` cuts the window into chunks of bounded size and paints each one from the spec alone,
so a window is bit-identical to the same crop of a full render.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from numbers import Integral

import numpy as np
from affine import Affine

from geoseg.classes import CLASS_NODATA
from geoseg.errors import ConfigError
from geoseg.synthetic.layers import (
    add_sensor_noise,
    nodata_mask,
    paint_fields,
    paint_forest,
    paint_lakes,
    paint_river,
    paint_roads,
    paint_towns,
)
from geoseg.synthetic.spec import IMAGE_NODATA, LandscapeSpec, make_spec

_CHUNK_PX = 512
"""render() draws windows in chunks of at most this many px a side, to bound memory."""


def render(
    spec: LandscapeSpec, row_off: int, col_off: int, height: int, width: int
) -> tuple[np.ndarray, np.ndarray]:
    """Draw one window of the scene: image (4, h, w) uint16 and labels (h, w) uint8.

    The result is bit-identical to the same crop of a full render. Nodata pixels are 0 in every
    band and 255 in the labels; valid pixels are >= 1 in every band.
    """
    _check_window(spec, row_off, col_off, height, width)
    image = np.empty((4, height, width), np.uint16)
    labels = np.empty((height, width), np.uint8)
    for r in range(0, height, _CHUNK_PX):
        for c in range(0, width, _CHUNK_PX):
            rows = np.arange(row_off + r, row_off + min(r + _CHUNK_PX, height), dtype=np.int64)
            cols = np.arange(col_off + c, col_off + min(c + _CHUNK_PX, width), dtype=np.int64)
            chunk = (slice(r, r + rows.size), slice(c, c + cols.size))
            image[:, chunk[0], chunk[1]], labels[chunk] = _render_chunk(spec, rows, cols)
    return image, labels


def _render_chunk(
    spec: LandscapeSpec, rows: np.ndarray, cols: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Draw the pixels rows x cols (absolute indices): layers bottom to top, noise, nodata."""
    seed = spec.seed
    img = np.empty((4, rows.size, cols.size), np.float32)
    labels = np.empty((rows.size, cols.size), np.uint8)
    paint_fields(spec, rows, cols, img, labels)
    paint_forest(seed, rows, cols, img, labels)
    paint_towns(spec, rows, cols, img, labels)
    paint_roads(spec, rows, cols, img, labels)
    paint_river(spec, rows, cols, img, labels)
    paint_lakes(spec, rows, cols, img, labels)
    add_sensor_noise(seed, rows, cols, img)
    image = np.clip(np.rint(img), 1, 10000).astype(np.uint16)
    nodata = nodata_mask(spec, rows, cols)
    if nodata is not None:
        image[:, nodata] = IMAGE_NODATA
        labels[nodata] = CLASS_NODATA
    return image, labels


def _check_window(spec: LandscapeSpec, row_off: int, col_off: int, height: int, width: int) -> None:
    """Refuse empty windows or windows that leave the scene."""
    if height <= 0 or width <= 0:
        raise ConfigError(f"render window {height}x{width} px is empty: give a positive size")
    if (
        row_off < 0
        or col_off < 0
        or row_off + height > spec.height_px
        or col_off + width > spec.width_px
    ):
        raise ConfigError(
            f"render window rows {row_off}..{row_off + height}, cols {col_off}..{col_off + width} "
            f"leaves the {spec.height_px}x{spec.width_px} px scene"
        )


# ---------------------------------------------------------------------------------------------
# Whole scenes in memory.


@dataclass(frozen=True, eq=False)
class Landscape:
    """A rendered scene: image (4, h, w) uint16, labels (h, w) uint8 and its georeferencing."""

    image: np.ndarray
    labels: np.ndarray
    transform: Affine
    crs: str
    image_nodata: int = IMAGE_NODATA
    label_nodata: int = CLASS_NODATA


def size_pair(size_px: int | tuple[int, int]) -> tuple[int, int]:
    """(height, width) from an int (square) or a pair."""
    if isinstance(size_px, Integral):
        return int(size_px), int(size_px)
    if not isinstance(size_px, Sequence) or len(size_px) != 2:
        raise ConfigError(f"size_px must be an int or (height, width), got {size_px!r}")
    return int(size_px[0]), int(size_px[1])


def make_landscape(size_px: int | tuple[int, int], seed: int, **spec_options: object) -> Landscape:
    """Render a whole synthetic scene in memory (for small scenes: tests, notebooks)."""
    height, width = size_pair(size_px)
    spec = make_spec(height, width, seed, **spec_options)  # type: ignore[arg-type]
    image, labels = render(spec, 0, 0, height, width)
    return Landscape(image, labels, spec.transform, spec.crs)
