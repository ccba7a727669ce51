"""Tiled prediction of one scene window: read tiles -> batched model -> blended row bands -> files.

Reader threads (one GDAL handle each) read ahead into a bounded window of tiles, so reading
overlaps inference; the calling thread batches tiles through the model(s) and feeds the
streaming accumulator; a writer thread turns finished rows into class and confidence rows on
disk. Nothing is scene-sized.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from shapely.geometry.base import BaseGeometry

from geoseg.classes import CLASS_NODATA
from geoseg.geo.grid import TileGrid
from geoseg.geo.scene import SceneGrid
from geoseg.geo.window import PixelWindow
from geoseg.inference.background import BackgroundWorker
from geoseg.inference.predictor import Predictor
from geoseg.inference.reader import ReadTile, TileFilter, batched, read_tiles
from geoseg.inference.settings import PredictSettings, PredictStats
from geoseg.inference.stitch import (
    RowBandAccumulator,
    blend_weights,
    classes_and_confidence,
)
from geoseg.inference.stitch_torch import TorchRowBandAccumulator, classes_and_confidence_torch
from geoseg.io.aoi import aoi_mask
from geoseg.io.outputs import classes_tags
from geoseg.io.raster import RowBandWriter, SceneInfo


@dataclass(frozen=True)
class SceneWindow:
    """The part of a scene to predict: its pixel window and the AOI in the scene's CRS."""

    scene: SceneInfo
    window: PixelWindow
    aoi: BaseGeometry

    @property
    def grid(self) -> SceneGrid:
        """Where the outputs lie: the window's grid on the scene's pixels."""
        return self.scene.grid.window(self.window)


def predict_scene(
    target: SceneWindow,
    predictor: Predictor,
    settings: PredictSettings,
    *,
    classes_path: Path,
    confidence_path: Path,
    on_tiles: Callable[[int], None] | None = None,
    grid: TileGrid | None = None,
) -> PredictStats:
    """Predict ``target`` and write the class and confidence rasters (tiled GeoTIFFs).

    Four stages overlap: reader threads fill a bounded look-ahead of tiles, the calling
    thread runs the model, a blending thread adds tile probabilities into the row band and
    turns finished rows into uint8 class/confidence rows, and a writer thread compresses and
    writes them. With ``settings.blend_on_device`` (default: on CUDA) the band and the
    class/confidence step live on the model's device and only uint8 rows come back.
    """
    t0 = time.perf_counter()
    predictor.check_tile_size(settings.tile_px)
    grid = grid or TileGrid.build(
        target.window, target.scene.grid.shape, settings.tile_px, settings.overlap_px
    )
    package = predictor.package
    classes = package.metadata.class_infos()
    class_ids = package.class_ids
    weights = blend_weights(settings.tile_px, settings.blend)
    on_device = settings.blends_on_device(predictor.device)
    gpu_timed = on_device and predictor.device.type == "cuda"
    acc: RowBandAccumulator | TorchRowBandAccumulator
    if on_device:
        acc = TorchRowBandAccumulator(
            target.window, len(class_ids), settings.tile_px, weights, predictor.device
        )
        device_class_ids = torch.as_tensor(class_ids.astype(np.uint8), device=predictor.device)
    else:
        acc = RowBandAccumulator(target.window, len(class_ids), settings.tile_px, weights)
    stats = PredictStats(tiles=len(grid), window_px=target.window.size_px)
    histogram = np.zeros(256, dtype=np.int64)
    out_grid = target.grid
    tags = classes_tags(classes)
    with (
        RowBandWriter(
            classes_path, out_grid, nodata=CLASS_NODATA, classes=classes, tags=tags
        ) as cw,
        RowBandWriter(
            confidence_path, out_grid, nodata=None, tags={"GEOSEG_UNITS": "percent"}
        ) as fw,
    ):

        def write(rows: tuple[int, np.ndarray, np.ndarray]) -> None:
            row_in_out, cls, conf = rows
            cw.write_rows(row_in_out, cls)
            fw.write_rows(row_in_out, conf)

        def aoi_inside(row_off: int, n_rows: int) -> np.ndarray:
            rows = PixelWindow(row_off, target.window.col_off, n_rows, target.window.width)
            return aoi_mask(target.aoi, target.scene.grid.window_transform(rows), rows.shape)

        def emit(row_off: int, cls: np.ndarray, conf: np.ndarray) -> None:
            histogram[:] += np.bincount(cls.ravel(), minlength=256)
            writer.submit((row_off - target.window.row_off, cls, conf))

        def finish(until_row: int) -> None:
            """Classes and confidence of the finished rows, masked by the AOI, to the writer."""
            if isinstance(acc, TorchRowBandAccumulator):
                # larger chunks on the device: fewer small kernels and host round trips
                for done in acc.release(until_row, chunk_rows=256):
                    cls_t, conf_t = classes_and_confidence_torch(
                        done.probs, done.valid, device_class_ids
                    )
                    cls, conf = torch.stack([cls_t, conf_t]).cpu().numpy()  # one copy back
                    outside = ~aoi_inside(done.row_off, cls.shape[0])
                    cls[outside] = CLASS_NODATA
                    conf[outside] = 0
                    emit(done.row_off, cls, conf)
                return
            for finished in acc.release(until_row):
                inside = aoi_inside(finished.row_off, finished.probs.shape[1])
                cls, conf = classes_and_confidence(
                    finished.probs, finished.valid & inside, class_ids
                )
                emit(finished.row_off, cls, conf)

        current_row = 0

        def blend(item: tuple[list[ReadTile], Any, Any, Any]) -> None:
            """Add a batch's probabilities to the band, releasing rows that became final.

            ``probs`` and ``valid``: numpy arrays, or tensors on the device when blending there
            (queued on the same CUDA stream as the model, so no synchronization is needed);
            ``timing``: CUDA events around the model's work, or None.
            """
            nonlocal current_row
            batch, probs, valid, timing = item
            with torch.inference_mode():
                for read, tile_probs, tile_valid in zip(batch, probs, valid, strict=True):
                    if read.tile.row != current_row:
                        finish(grid.rows_final_before(read.tile.row))
                        current_row = read.tile.row
                    acc.add(read.tile, tile_probs, tile_valid)
            if timing is not None:
                timing[1].synchronize()
                stats.model_seconds += timing[0].elapsed_time(timing[1]) / 1000.0

        # blending and class/confidence rows run in their own thread, overlapping the model
        writer = BackgroundWorker(write, depth=4)
        blender = BackgroundWorker(blend, depth=2, name="geoseg-blend")
        try:
            tiles = read_tiles(
                target.scene,
                grid,
                package.metadata.band_indexes,
                threads=settings.reader_threads,
                lookahead=settings.prefetch_tiles or 2 * settings.batch_size,
            )
            needed = TileFilter(target, on_skipped=on_tiles)
            if settings.skip_empty_tiles:
                tiles = filter(needed, tiles)
            for batch in batched(tiles, settings.batch_size):
                tm = time.perf_counter()
                raw = np.stack([b.data for b in batch])
                valid = np.stack([b.valid for b in batch])
                if gpu_timed:
                    # the model runs asynchronously: time it on the GPU, read out when blending
                    start, end = (torch.cuda.Event(enable_timing=True) for _ in range(2))
                    start.record(torch.cuda.current_stream(predictor.device))
                    probs_t, valid_t = predictor.probabilities(raw, valid)
                    end.record(torch.cuda.current_stream(predictor.device))
                    blender.submit((batch, probs_t, valid_t, (start, end)))
                elif on_device:
                    probs_t, valid_t = predictor.probabilities(raw, valid)
                    stats.model_seconds += time.perf_counter() - tm
                    blender.submit((batch, probs_t, valid_t, None))
                else:
                    probs = predictor(raw, valid)
                    stats.model_seconds += time.perf_counter() - tm
                    blender.submit((batch, probs, [b.valid for b in batch], None))
                if on_tiles is not None:
                    on_tiles(len(batch))
            stats.skipped_tiles = needed.skipped
            blender.close()
            with torch.inference_mode():
                finish(target.window.row_end)
        finally:
            try:
                blender.close()
            finally:
                writer.close()
    stats.class_px = {i: int(n) for i, n in enumerate(histogram[:CLASS_NODATA]) if n}
    stats.valid_px = int(histogram[:CLASS_NODATA].sum())
    stats.seconds = time.perf_counter() - t0
    return stats
