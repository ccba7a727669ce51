"""The row-band accumulator and class/confidence on a torch device (CUDA), for fast GPUs.

Same semantics as `geoseg.inference.stitch.RowBandAccumulator` and `classes_and_confidence`,
but the weighted sums live on the device next to the model's output, so per batch only uint8
class and confidence rows come back to the host instead of float32 probabilities. Kept apart
from `geoseg.inference.stitch` so that importing the numpy path (and the settings) does not
import torch.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from geoseg.geo.window import PixelWindow
from geoseg.inference.stitch import RowBandAccumulator


@dataclass(frozen=True)
class FinishedRowsTensor:
    """Blended, normalized class probabilities for whole rows, as device tensors."""

    row_off: int
    """First row, in scene pixels."""
    probs: torch.Tensor
    """(classes, rows, window width) float32; rows with no valid tile pixel are all zero."""
    valid: torch.Tensor
    """(rows, window width) bool: at least one valid input pixel was blended here."""


class TorchRowBandAccumulator(RowBandAccumulator):
    """`geoseg.inference.stitch.RowBandAccumulator` with its sums in torch tensors on ``device``.

    Only the array operations differ (`_array`, `_zeros`, `_where`, `_copy`, `_finished`);
    adding and releasing are the numpy version's code, operation for operation (multiply,
    then add; no fused multiply-add), so on the CPU both give the same float32 sums.
    """

    def __init__(
        self,
        window: PixelWindow,
        n_classes: int,
        tile_px: int,
        weights: np.ndarray | torch.Tensor,
        device: torch.device | str = "cpu",
    ):
        self.device = torch.device(device)
        super().__init__(window, n_classes, tile_px, weights)  # type: ignore[arg-type]

    def _array(self, values: np.ndarray | torch.Tensor) -> torch.Tensor:
        return torch.as_tensor(values, dtype=torch.float32).to(self.device)

    def _zeros(self, shape: tuple[int, ...], *, boolean: bool = False) -> torch.Tensor:
        dtype = torch.bool if boolean else torch.float32
        return torch.zeros(shape, dtype=dtype, device=self.device)

    def _where(self, condition: torch.Tensor, values: torch.Tensor, other: float) -> torch.Tensor:
        return torch.where(condition, values, other)

    def _copy(self, values: torch.Tensor) -> torch.Tensor:
        return values.clone()  # torch does not copy overlapping slices through a temporary

    def _finished(
        self, row_off: int, probs: torch.Tensor, valid: torch.Tensor
    ) -> FinishedRowsTensor:
        return FinishedRowsTensor(row_off, probs, valid)


def classes_and_confidence_torch(
    probs: torch.Tensor, valid: torch.Tensor, class_ids: torch.Tensor, nodata: int = 255
) -> tuple[torch.Tensor, torch.Tensor]:
    """`classes_and_confidence` (`geoseg.inference.stitch`) on tensors: uint8 classes, 0..100 %.

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
