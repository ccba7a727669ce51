"""The model stage of `predict_scene`: a batch of read tiles -> probabilities and model time.

Three flavours, chosen once per run by `model_step`: probabilities as numpy arrays on the host
(the numpy blender), or as tensors left on the device (the torch blender), timed with
``perf_counter``; on CUDA the model runs asynchronously, so it is timed with CUDA events that
are read only after the batch was blended (`ModelOutput.seconds`).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from geoseg.inference.predictor import Predictor
from geoseg.inference.reader import ReadTile


@dataclass(frozen=True)
class Elapsed:
    """Model time measured on the host."""

    elapsed_s: float

    def seconds(self) -> float:
        return self.elapsed_s


@dataclass(frozen=True)
class CudaElapsed:
    """Model time between two CUDA events; reading it waits for the end event."""

    start: Any
    end: Any

    def seconds(self) -> float:
        self.end.synchronize()
        return self.start.elapsed_time(self.end) / 1000.0


@dataclass(frozen=True)
class ModelOutput:
    """One batch through the model: its tiles, probabilities and valid masks, per tile."""

    batch: Sequence[ReadTile]
    probs: Any
    """(B, classes, t, t): a numpy array, or a tensor on the predictor's device."""
    valid: Any
    """The tiles' (t, t) valid masks: numpy arrays, or a (B, t, t) tensor on the device."""
    elapsed: Elapsed | CudaElapsed

    def seconds(self) -> float:
        """Seconds the model took (on CUDA: call once the probabilities have been used)."""
        return self.elapsed.seconds()


class ModelStep:
    """Runs the predictor on a batch, probabilities back on the host, timed on the host."""

    def __init__(self, predictor: Predictor):
        self._predictor = predictor

    def __call__(self, batch: Sequence[ReadTile]) -> ModelOutput:
        t0 = time.perf_counter()
        raw, valid = _stacked(batch)
        probs, tile_valid = self._probabilities(batch, raw, valid)
        return ModelOutput(batch, probs, tile_valid, Elapsed(time.perf_counter() - t0))

    def _probabilities(
        self, batch: Sequence[ReadTile], raw: np.ndarray, valid: np.ndarray
    ) -> tuple[Any, Any]:
        return self._predictor(raw, valid), [b.output_valid for b in batch]


class DeviceModelStep(ModelStep):
    """Probabilities and valid masks stay on the predictor's device, for the torch blender."""

    def _probabilities(
        self, batch: Sequence[ReadTile], raw: np.ndarray, valid: np.ndarray
    ) -> tuple[Any, Any]:
        probs, on_device = self._predictor.probabilities(raw, valid)
        if any(b.masked is not None for b in batch):  # the outputs drop masked pixels
            kept = np.stack([b.output_valid for b in batch])
            on_device = torch.from_numpy(kept).to(self._predictor.device)
        return probs, on_device


class CudaModelStep(DeviceModelStep):
    """`DeviceModelStep` on CUDA: the queued model work is timed with CUDA events."""

    def __call__(self, batch: Sequence[ReadTile]) -> ModelOutput:
        raw, valid = _stacked(batch, dtype=None)
        start, end = (torch.cuda.Event(enable_timing=True) for _ in range(2))
        start.record(torch.cuda.current_stream(self._predictor.device))
        probs, tile_valid = self._probabilities(batch, raw, valid)
        end.record(torch.cuda.current_stream(self._predictor.device))
        return ModelOutput(batch, probs, tile_valid, CudaElapsed(start, end))


def _stacked(
    batch: Sequence[ReadTile], dtype: type[np.floating] | None = np.float32
) -> tuple[np.ndarray, np.ndarray]:
    """The batch's raw tiles (B, bands, t, t) and valid masks (B, t, t), stacked.

    On the host the tiles become float32 in the same pass (``dtype``); for CUDA they stay in
    their stored dtype (``dtype=None``: uint16 copies half the bytes) and are made float32
    on the device (`normalize_channels_last`).
    """
    data = np.stack([b.data for b in batch], dtype=dtype)
    return data, np.stack([b.valid for b in batch])


def model_step(predictor: Predictor, on_device: bool) -> ModelStep:
    """The model step for a run that blends on the device (``on_device``) or on the host."""
    if not on_device:
        return ModelStep(predictor)
    if predictor.device.type == "cuda":
        return CudaModelStep(predictor)
    return DeviceModelStep(predictor)
