"""Blenders: a scene's tile probabilities in, finished uint8 class and confidence rows out.

`predict_scene` picks one per run with `scene_blender`: `NumpyBlender` blends on the host
(`RowBandAccumulator` + `classes_and_confidence`, the AOI masked into ``valid`` first);
`TorchBlender` keeps the band on the predictor's device (`TorchRowBandAccumulator` +
`classes_and_confidence_torch`) so only uint8 rows come back, and masks the AOI on the host.
On the CPU both write the same rows, bit for bit. A blender keeps its own current tile row:
feed it batches in grid order, then `finish` the window.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np
import torch

from geoseg.classes import CLASS_NODATA
from geoseg.geo.grid import TileGrid
from geoseg.geo.window import PixelWindow
from geoseg.inference.reader import ReadTile
from geoseg.inference.stitch import RowBandAccumulator, blend_weights, classes_and_confidence
from geoseg.inference.stitch_torch import TorchRowBandAccumulator, classes_and_confidence_torch
from geoseg.io.aoi import aoi_mask

if TYPE_CHECKING:
    from geoseg.inference.predictor import Predictor
    from geoseg.inference.scene import SceneWindow
    from geoseg.inference.settings import PredictSettings


class ClassRows(NamedTuple):
    """Finished rows of the output rasters, ready for the writer."""

    row: int
    """First row, counted from the top of the output window."""
    classes: np.ndarray
    """(rows, window width) uint8 class values, `CLASS_NODATA` outside the AOI or input."""
    confidence: np.ndarray
    """(rows, window width) uint8 percent of the winning class, 0 where the class is nodata."""


class Blender(ABC):
    """Adds tile probabilities to a row band and turns rows that became final into `ClassRows`.

    `add` and `finish` are generators: consume them fully (the band moves on as they run).
    """

    def __init__(self, target: SceneWindow, grid: TileGrid, accumulator: RowBandAccumulator):
        self._target = target
        self._grid = grid
        self._acc = accumulator
        self._tile_row = 0

    def add(self, batch: Sequence[ReadTile], probs: Any, valid: Any) -> Iterator[ClassRows]:
        """Blend a batch's tiles (probabilities and valid masks per tile, in grid order).

        Yields the rows finished by the tiles added so far whenever a new tile row starts.
        """
        for read, tile_probs, tile_valid in zip(batch, probs, valid, strict=True):
            if read.tile.row != self._tile_row:
                yield from self.finish(self._grid.rows_final_before(read.tile.row))
                self._tile_row = read.tile.row
            self._acc.add(read.tile, tile_probs, tile_valid)

    @abstractmethod
    def finish(self, until_row: int) -> Iterator[ClassRows]:
        """Class and confidence of the rows before scene row ``until_row``, AOI masked."""

    def _aoi_inside(self, row_off: int, n_rows: int) -> np.ndarray:
        """(n_rows, window width) bool: pixel centres inside the AOI, from scene row ``row_off``."""
        window = self._target.window
        rows = PixelWindow(row_off, window.col_off, n_rows, window.width)
        return aoi_mask(
            self._target.aoi, self._target.scene.grid.window_transform(rows), rows.shape
        )

    def _rows(self, row_off: int, classes: np.ndarray, confidence: np.ndarray) -> ClassRows:
        return ClassRows(row_off - self._target.window.row_off, classes, confidence)


class NumpyBlender(Blender):
    """The band in numpy on the host; the AOI is masked into ``valid`` before class/confidence."""

    def __init__(
        self, target: SceneWindow, grid: TileGrid, weights: np.ndarray, class_ids: np.ndarray
    ):
        tile_px = weights.shape[0]
        acc = RowBandAccumulator(target.window, len(class_ids), tile_px, weights)
        super().__init__(target, grid, acc)
        self._class_ids = class_ids

    def finish(self, until_row: int) -> Iterator[ClassRows]:
        for finished in self._acc.release(until_row):
            inside = self._aoi_inside(finished.row_off, finished.probs.shape[1])
            cls, conf = classes_and_confidence(
                finished.probs, finished.valid & inside, self._class_ids
            )
            yield self._rows(finished.row_off, cls, conf)


class TorchBlender(Blender):
    """The band and class/confidence in torch on ``device``: one uint8 copy back per chunk.

    Releases 256-row chunks (fewer small kernels and host round trips) and masks the AOI on the
    host afterwards. Tensors from the model are used on the current CUDA stream, where the
    model queued its work, so no synchronization is needed.
    """

    def __init__(
        self,
        target: SceneWindow,
        grid: TileGrid,
        weights: np.ndarray,
        class_ids: np.ndarray,
        device: torch.device,
    ):
        tile_px = weights.shape[0]
        acc = TorchRowBandAccumulator(target.window, len(class_ids), tile_px, weights, device)
        super().__init__(target, grid, acc)
        self._class_ids = torch.as_tensor(class_ids.astype(np.uint8), device=device)

    @torch.inference_mode()
    def add(self, batch: Sequence[ReadTile], probs: Any, valid: Any) -> Iterator[ClassRows]:
        yield from super().add(batch, probs, valid)

    @torch.inference_mode()
    def finish(self, until_row: int) -> Iterator[ClassRows]:
        for done in self._acc.release(until_row, chunk_rows=256):
            cls_t, conf_t = classes_and_confidence_torch(done.probs, done.valid, self._class_ids)
            cls, conf = torch.stack([cls_t, conf_t]).cpu().numpy()  # one copy back
            outside = ~self._aoi_inside(done.row_off, cls.shape[0])
            cls[outside] = CLASS_NODATA
            conf[outside] = 0
            yield self._rows(done.row_off, cls, conf)


def scene_blender(
    target: SceneWindow, grid: TileGrid, predictor: Predictor, settings: PredictSettings
) -> Blender:
    """The blender for this run: on the predictor's device when `settings` blend there."""
    weights = blend_weights(settings.tile_px, settings.blend)
    class_ids = predictor.package.class_ids
    if settings.blends_on_device(predictor.device):
        return TorchBlender(target, grid, weights, class_ids, predictor.device)
    return NumpyBlender(target, grid, weights, class_ids)
