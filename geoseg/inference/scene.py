"""Tiled prediction of one scene window: read tiles -> batched model -> blended rows -> files.

Reader threads (one GDAL handle each) read ahead into a bounded window of tiles, so reading
overlaps inference; the calling thread batches tiles through the model(s); a blending thread
feeds the streaming row band (`geoseg.inference.blender`, numpy or torch on the device) and
turns finished rows into uint8 class and confidence rows; a writer thread compresses and writes
them. Nothing is scene-sized.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self

import numpy as np
from shapely.geometry.base import BaseGeometry

from geoseg.classes import CLASS_NODATA
from geoseg.geo.grid import TileGrid
from geoseg.geo.scene import SceneGrid
from geoseg.geo.window import PixelWindow
from geoseg.inference.background import BackgroundWorker
from geoseg.inference.blender import Blender, ClassRows, scene_blender
from geoseg.inference.model_step import ModelOutput, model_step
from geoseg.inference.predictor import Predictor
from geoseg.inference.reader import ReadTile, TileFilter, batched, read_tiles
from geoseg.inference.settings import PredictSettings, PredictStats
from geoseg.io.outputs import classes_tags
from geoseg.io.pixels import ReadPlan
from geoseg.io.raster import RowBandWriter, SceneInfo
from geoseg.models.package import ModelPackage


@dataclass(frozen=True)
class SceneWindow:
    """The part of a scene to predict: its pixel window, the AOI in the scene's CRS, and how
    its pixels are read (``plan``; None: the model's bands as stored)."""

    scene: SceneInfo
    window: PixelWindow
    aoi: BaseGeometry
    plan: ReadPlan | None = None
    source: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)
    """What run.json says about the input (item, assets, radiometry, mask, grid)."""
    hrefs: tuple[str, ...] = ()
    """The remote or local files behind the scene (a VRT's bands), for GDAL's settings."""
    aoi_margin: float = 0.0
    """How far ``aoi`` reaches beyond the AOI file's polygon, in the scene's CRS units (the
    mosaic's margin for scenes it reprojects; 0: the AOI itself)."""

    def read_plan(self, package: ModelPackage) -> ReadPlan:
        """The plan, or the package's bands used as stored."""
        return self.plan or ReadPlan.stored(package.metadata.band_indexes)

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
    blender = scene_blender(target, grid, predictor, settings)
    model = model_step(predictor, settings.blends_on_device(predictor.device))
    stats = PredictStats(tiles=len(grid), window_px=target.window.size_px)
    with SceneRasters(target, predictor.package, classes_path, confidence_path) as rasters:
        # blending and class/confidence rows run in their own thread, overlapping the model
        blending = BackgroundWorker(
            BlendStage(blender, rasters, stats), depth=2, name="geoseg-blend"
        )
        try:
            needed = TileFilter(target, on_skipped=on_tiles)
            masked = MaskedCount(grid)
            tiles = map(masked, _read_stage(target, grid, predictor, settings, needed))
            for batch in batched(tiles, settings.batch_size):
                blending.submit(model(batch))
                if on_tiles is not None:
                    on_tiles(len(batch))
            stats.skipped_tiles = needed.skipped
            stats.masked_px = masked.count
            blending.close()
            rasters.put(blender.finish(target.window.row_end))
        finally:
            blending.close()  # then the writer, as the rasters close
    rasters.count_pixels(stats)
    stats.seconds = time.perf_counter() - t0
    return stats


def _read_stage(
    target: SceneWindow,
    grid: TileGrid,
    predictor: Predictor,
    settings: PredictSettings,
    needed: TileFilter,
) -> Iterator[ReadTile]:
    """The grid's tiles read ahead by reader threads, without those ``needed`` rejects."""
    tiles = read_tiles(
        target.scene,
        grid,
        target.read_plan(predictor.package),
        threads=settings.reader_threads,
        lookahead=settings.prefetch_tiles or 2 * settings.batch_size,
    )
    return filter(needed, tiles) if settings.skip_empty_tiles else tiles


class MaskedCount:
    """Passes tiles through, counting masked pixels once each though tiles' outputs overlap.

    A tile owns the rows from its output's first row to the next tile row's first (the
    last tile row: to its output's end), and the same for columns; these cells partition the
    window, so each pixel is counted in exactly one tile.
    """

    def __init__(self, grid: TileGrid) -> None:
        tiles = list(grid)
        self._rows = sorted({t.out.row_off for t in tiles})
        self._cols = sorted({t.out.col_off for t in tiles})
        self.count = 0

    @staticmethod
    def _owned(starts: list[int], start: int, end: int) -> tuple[int, int]:
        i = starts.index(start)
        return start, starts[i + 1] if i + 1 < len(starts) else end

    def __call__(self, item: ReadTile) -> ReadTile:
        if item.masked is not None:
            out, read = item.tile.out, item.tile.read
            r0, r1 = self._owned(self._rows, out.row_off, out.row_end)
            c0, c1 = self._owned(self._cols, out.col_off, out.col_end)
            rows = slice(r0 - read.row_off, r1 - read.row_off)
            cols = slice(c0 - read.col_off, c1 - read.col_off)
            self.count += int(item.masked[rows, cols].sum())
        return item


class SceneRasters:
    """The class and confidence rasters of a window, written row band by row band.

    `put` counts pixels per class value and hands rows to a writer thread; on exit the
    writer thread finishes (its error re-raised), then both files close.
    """

    def __init__(
        self, target: SceneWindow, package: ModelPackage, classes_path: Path, confidence_path: Path
    ):
        classes = package.metadata.class_infos()
        grid = target.grid
        tags = classes_tags(classes)
        self._classes = RowBandWriter(
            classes_path, grid, nodata=CLASS_NODATA, classes=classes, tags=tags
        )
        self._confidence = RowBandWriter(
            confidence_path, grid, nodata=None, tags={"GEOSEG_UNITS": "percent"}
        )
        self._histogram = np.zeros(256, dtype=np.int64)
        self._stack = ExitStack()

    def __enter__(self) -> Self:
        with ExitStack() as stack:
            stack.enter_context(self._classes)
            stack.enter_context(self._confidence)
            self._writer = BackgroundWorker(self._write, depth=4)
            stack.callback(self._writer.close)
            self._stack = stack.pop_all()
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self._stack.__exit__(*exc_info)

    def put(self, rows: Iterable[ClassRows]) -> None:
        """Count the rows' pixels per class value and queue them for writing."""
        for item in rows:
            self._histogram += np.bincount(item.classes.ravel(), minlength=256)
            self._writer.submit(item)

    def _write(self, rows: ClassRows) -> None:
        self._classes.write_rows(rows.row, rows.classes)
        self._confidence.write_rows(rows.row, rows.confidence)

    def count_pixels(self, stats: PredictStats) -> None:
        """Pixels per class value and valid pixels (not nodata) written, into ``stats``."""
        counts = self._histogram[:CLASS_NODATA]
        stats.class_px = {i: int(n) for i, n in enumerate(counts) if n}
        stats.valid_px = int(counts.sum())


class BlendStage:
    """The blending thread's work: a model output into the band, finished rows to the files.

    Adds the model time once the batch is blended (on CUDA reading it waits for the model).
    """

    def __init__(self, blender: Blender, rasters: SceneRasters, stats: PredictStats):
        self._blender = blender
        self._rasters = rasters
        self._stats = stats

    def __call__(self, output: ModelOutput) -> None:
        self._rasters.put(self._blender.add(output.batch, output.probs, output.valid))
        self._stats.model_seconds += output.seconds()
