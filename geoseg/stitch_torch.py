"""The row-band accumulator and class/confidence on a torch device (CUDA), for fast GPUs.

Same semantics as `geoseg.stitch.RowBandAccumulator` and `classes_and_confidence`, but the
weighted sums live on the device next to the model's output, so per batch only uint8 class and
confidence rows come back to the host instead of float32 probabilities. Kept apart from
`geoseg.stitch` so that importing the numpy path does not import torch.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch

from geoseg.grid import PixelWindow, Tile


@dataclass(frozen=True)
class FinishedRowsTensor:
    """Blended, normalized class probabilities for whole rows, as device tensors."""

    row_off: int
    """First row, in scene pixels."""
    probs: torch.Tensor
    """(classes, rows, window width) float32; rows with no valid tile pixel are all zero."""
    valid: torch.Tensor
    """(rows, window width) bool: at least one valid input pixel was blended here."""


class TorchRowBandAccumulator:
    """`geoseg.stitch.RowBandAccumulator` with its sums in torch tensors on ``device``.

    Call `add` for tiles in row-major grid order, and `release(until_row)` whenever every
    tile that touches rows before ``until_row`` has been added. The arithmetic is the numpy
    version's, operation for operation (multiply, then add; no fused multiply-add), so on the
    CPU both give the same float32 sums.
    """

    def __init__(
        self,
        window: PixelWindow,
        n_classes: int,
        tile_px: int,
        weights: np.ndarray | torch.Tensor,
        device: torch.device | str = "cpu",
    ):
        self.window = window
        self.n_classes = n_classes
        self.device = torch.device(device)
        self._weights = torch.as_tensor(weights, dtype=torch.float32).to(self.device)
        self._band_rows = min(tile_px, window.height)
        self._top = window.row_off
        shape = (n_classes, self._band_rows, window.width)
        self._prob_sum = torch.zeros(shape, dtype=torch.float32, device=self.device)
        self._weight_sum = torch.zeros(shape[1:], dtype=torch.float32, device=self.device)

    @property
    def top(self) -> int:
        """First scene row not yet released."""
        return self._top

    def add(self, tile: Tile, probs: torch.Tensor, valid: torch.Tensor | None = None) -> None:
        """Blend one tile's probabilities (classes, tile, tile) into the band.

        ``valid`` (tile, tile) bool marks pixels with real input; others add no weight.
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

    def release(self, until_row: int, chunk_rows: int = 64) -> Iterator[FinishedRowsTensor]:
        """Normalize and hand out rows ``[top, until_row)`` in chunks, then drop them.

        The band shifts up once the last chunk has been handed out, so consume the iterator
        fully (and use each chunk before taking the next one: the band is not copied).
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
            probs = self._prob_sum[:, r0:r1] / torch.where(valid, wsum, 1.0)
            yield FinishedRowsTensor(self._top + r0, probs, valid)
        self._shift(n)

    def _empty_rows(self, row_off: int, n_rows: int) -> FinishedRowsTensor:
        width = self.window.width
        probs = torch.zeros(
            (self.n_classes, n_rows, width), dtype=torch.float32, device=self.device
        )
        return FinishedRowsTensor(
            row_off, probs, torch.zeros((n_rows, width), dtype=torch.bool, device=self.device)
        )

    def _shift(self, n: int) -> None:
        keep = self._band_rows - n
        if keep > 0:
            # overlapping source and destination: copy through a temporary
            self._prob_sum[:, :keep] = self._prob_sum[:, n:].clone()
            self._weight_sum[:keep] = self._weight_sum[n:].clone()
        self._prob_sum[:, max(keep, 0) :] = 0.0
        self._weight_sum[max(keep, 0) :] = 0.0
        self._top += n


def classes_and_confidence_torch(
    probs: torch.Tensor, valid: torch.Tensor, class_ids: torch.Tensor, nodata: int = 255
) -> tuple[torch.Tensor, torch.Tensor]:
    """`geoseg.stitch.classes_and_confidence` on tensors: uint8 class ids and 0..100 percent.

    ``class_ids`` (a uint8 tensor on the same device) maps output channels to class values;
    pixels that are not valid get ``nodata`` and confidence 0. Ties go to the first class, and
    ``torch.round`` rounds half to even like ``np.rint``.
    """
    best = probs.argmax(dim=0)
    best_p = probs.gather(0, best[None])[0]
    classes = class_ids[best]
    confidence = torch.round(best_p * 100.0)
    classes = torch.where(valid, classes, nodata).to(torch.uint8)
    confidence = torch.where(valid, confidence, 0.0).to(torch.uint8)
    return classes, confidence
