"""Seamless stitching: smooth blending weights and the streaming row-band accumulator.

Overlapping tile predictions are averaged with weights that fall smoothly towards tile edges
(a Hann window with a floor), so the CNN's weak border predictions count little and no seam
shows. Memory stays bounded by scene width x tile height: the accumulator only holds the band
of rows that the current tile row can still touch, and hands finished rows out in order.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import numpy as np

from geoseg.geo.grid import Tile
from geoseg.geo.window import PixelWindow


class BlendKind(StrEnum):
    """How a tile's pixels are weighted when overlapping predictions are averaged."""

    HANN = "hann"
    FLAT = "flat"


def blend_weights(
    tile_px: int, kind: BlendKind = BlendKind.HANN, floor: float = 1e-3
) -> np.ndarray:
    """Weights (tile_px, tile_px) float32: an outer product of 1-D windows, at least ``floor``.

    The 1-D Hann window is ``sin²(π (i + 0.5) / n)``: 1 at the centre, near 0 at the edges.
    The floor keeps every pixel's total weight positive where only one tile covers it.
    """
    if kind is BlendKind.FLAT:
        return np.ones((tile_px, tile_px), dtype=np.float32)
    i = np.arange(tile_px, dtype=np.float64)
    w1 = np.sin(np.pi * (i + 0.5) / tile_px) ** 2
    return np.maximum(np.outer(w1, w1), floor).astype(np.float32)


@dataclass(frozen=True)
class FinishedRows:
    """Blended, normalized class probabilities for whole rows of the output window."""

    row_off: int
    """First row, in scene pixels."""
    probs: np.ndarray
    """(classes, rows, window width) float32; rows with no valid tile pixel are all zero."""
    valid: np.ndarray
    """(rows, window width) bool: at least one valid input pixel was blended here."""


class RowBandAccumulator:
    """Weighted sums of tile probabilities over a band of rows, released as rows finish.

    Call `add` for tiles in row-major grid order, and `release(until_row)` whenever every
    tile that touches rows before ``until_row`` has been added.
    """

    def __init__(self, window: PixelWindow, n_classes: int, tile_px: int, weights: np.ndarray):
        self.window = window
        self.n_classes = n_classes
        self._weights = self._array(weights)
        self._band_rows = min(tile_px, window.height)
        self._top = window.row_off
        self._prob_sum = self._zeros((n_classes, self._band_rows, window.width))
        self._weight_sum = self._zeros((self._band_rows, window.width))

    # The array operations a subclass may swap (`geoseg.inference.stitch_torch`: torch on a device).

    def _array(self, values: np.ndarray) -> Any:
        return np.asarray(values, dtype=np.float32)

    def _zeros(self, shape: tuple[int, ...], *, boolean: bool = False) -> Any:
        return np.zeros(shape, dtype=bool if boolean else np.float32)

    def _where(self, condition: Any, values: Any, other: float) -> Any:
        return np.where(condition, values, other)

    def _copy(self, values: Any) -> Any:
        """A copy where source and destination of a shift overlap (numpy copies by itself)."""
        return values

    def _finished(self, row_off: int, probs: Any, valid: Any) -> Any:
        return FinishedRows(row_off, probs, valid)

    @property
    def top(self) -> int:
        """First scene row not yet released."""
        return self._top

    def add(self, tile: Tile, probs: np.ndarray, valid: np.ndarray | None = None) -> None:
        """Blend one tile's probabilities (classes, tile, tile) into the band.

        ``valid`` (tile, tile) bool marks pixels with real input; others add no weight, so
        input nodata ends with zero total weight and is reported as not valid.
        """
        rows, cols = tile.out_in_tile
        weights = self._weights[rows, cols]
        if valid is not None:
            weights = weights * valid[rows, cols]
        band_r0 = tile.out.row_off - self._top
        band_r1 = band_r0 + tile.out.height
        if band_r0 < 0 or band_r1 > self._band_rows:
            raise RuntimeError(
                f"tile {tile.row},{tile.col} rows {tile.out.row_off}..{tile.out.row_end} fall "
                f"outside the open band starting at row {self._top}: tiles out of order"
            )
        c0 = tile.out.col_off - self.window.col_off
        c1 = c0 + tile.out.width
        self._prob_sum[:, band_r0:band_r1, c0:c1] += probs[:, rows, cols] * weights
        self._weight_sum[band_r0:band_r1, c0:c1] += weights

    def release(self, until_row: int, chunk_rows: int = 64) -> Iterator[Any]:
        """Normalize and hand out rows ``[top, until_row)`` in chunks, then drop them.

        Chunks keep the temporaries small (``chunk_rows`` x width); the band shifts up once
        the last chunk has been handed out, so consume the iterator fully.
        """
        n = min(until_row, self.window.row_end) - self._top
        if n <= 0:
            return
        # rows past the band were reached by no tile (tiles skipped): they come out empty
        starts = sorted(
            {*range(0, n, chunk_rows), *([self._band_rows] if self._band_rows < n else [])}
        )
        for r0, r1 in zip(starts, [*starts[1:], n], strict=True):
            if r0 >= self._band_rows:
                yield self._empty_rows(self._top + r0, r1 - r0)
                continue
            wsum = self._weight_sum[r0:r1]
            valid = wsum > 0
            probs = self._prob_sum[:, r0:r1] / self._where(valid, wsum, 1.0)
            yield self._finished(self._top + r0, probs, valid)
        self._shift(n)

    def _empty_rows(self, row_off: int, n_rows: int) -> Any:
        width = self.window.width
        probs = self._zeros((self.n_classes, n_rows, width))
        return self._finished(row_off, probs, self._zeros((n_rows, width), boolean=True))

    def _shift(self, n: int) -> None:
        keep = self._band_rows - n
        if keep > 0:
            self._prob_sum[:, :keep] = self._copy(self._prob_sum[:, n:])
            self._weight_sum[:keep] = self._copy(self._weight_sum[n:])
        self._prob_sum[:, max(keep, 0) :] = 0.0
        self._weight_sum[max(keep, 0) :] = 0.0
        self._top += n


def classes_and_confidence(
    probs: np.ndarray, valid: np.ndarray, class_ids: np.ndarray, nodata: int = 255
) -> tuple[np.ndarray, np.ndarray]:
    """Per pixel: class id of the most probable class and its probability as uint8 0..100.

    ``class_ids`` maps the model's output channel to the class raster value. Pixels that are
    not valid get ``nodata`` as class and 0 as confidence.
    """
    best = probs.argmax(axis=0)
    classes = class_ids.astype(np.uint8)[best]
    confidence = np.rint(np.take_along_axis(probs, best[None], axis=0)[0] * 100.0)
    classes[~valid] = nodata
    confidence = np.where(valid, confidence, 0).astype(np.uint8)
    return classes, confidence
