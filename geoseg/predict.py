"""Tiled prediction of one scene window: read tiles -> batched model -> blended row bands -> files.

The reader runs in its own thread and fills a bounded queue, so reading overlaps inference;
the main thread batches tiles through the model and feeds the streaming accumulator, which
hands finished rows to the class and confidence writers. Nothing is scene-sized.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import rasterio
import torch
from rasterio.crs import CRS
from shapely.geometry.base import BaseGeometry

from geoseg.classes import CLASS_NODATA
from geoseg.errors import ConfigError
from geoseg.grid import PixelWindow, Tile, TileGrid
from geoseg.io.aoi import aoi_mask
from geoseg.io.raster import OutputGrid, RowBandWriter, SceneInfo, classes_tags, read_window
from geoseg.models.registry import required_multiple
from geoseg.package import ModelPackage
from geoseg.stitch import BlendKind, RowBandAccumulator, blend_weights, classes_and_confidence


@dataclass(frozen=True)
class PredictSettings:
    """How to tile and batch a scene; defaults come from the model package."""

    tile_px: int
    overlap_px: int
    batch_size: int
    blend: BlendKind = BlendKind.HANN
    prefetch_tiles: int = 32


@dataclass
class PredictStats:
    """What one scene's prediction did, for the summary and run.json."""

    tiles: int = 0
    window_px: int = 0
    valid_px: int = 0
    class_px: dict[int, int] = field(default_factory=dict)
    seconds: float = 0.0
    model_seconds: float = 0.0


def resolve_device(name: str) -> torch.device:
    """``auto`` picks CUDA when present; asking for CUDA without one is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError("--device cuda: no CUDA device is available here; use --device cpu")
    if name != "cpu" and not name.startswith("cuda"):
        raise ConfigError(f"--device {name!r}: use auto, cpu or cuda")
    return torch.device(name)


class Predictor:
    """A package's model on a device, turning normalized tile batches into probabilities."""

    def __init__(self, package: ModelPackage, device: torch.device):
        self.package = package
        self.device = device
        self.model = package.build().to(device)
        self.multiple = required_multiple(self.model)
        if device.type == "cuda":
            self.model = self.model.to(memory_format=torch.channels_last)

    def check_tile_size(self, tile_px: int) -> None:
        """The encoder needs sizes divisible by its stride; name the nearest sizes that work."""
        if tile_px % self.multiple:
            lower = tile_px // self.multiple * self.multiple
            raise ConfigError(
                f"--tile-size {tile_px}: this model needs a multiple of {self.multiple} px; "
                f"use {max(lower, self.multiple)} or {lower + self.multiple}"
            )

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        """(B, bands, t, t) float32 -> (B, classes, t, t) float32 softmax probabilities."""
        x = torch.from_numpy(batch)
        if self.device.type == "cuda":
            x = x.pin_memory().to(self.device, non_blocking=True)
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.inference_mode(), self._autocast():
            probs = torch.softmax(self.model(x).float(), dim=1)
        return probs.cpu().numpy()

    def _autocast(self) -> torch.autocast:
        if self.device.type == "cuda":
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return torch.autocast("cpu", enabled=False)


@dataclass(frozen=True)
class ReadTile:
    """A tile's normalized input (bands, t, t) and its valid-pixel mask (t, t)."""

    tile: Tile
    data: np.ndarray
    valid: np.ndarray


def normalize(data: np.ndarray, valid: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    """(x - mean) / std per band as float32; invalid pixels become 0 (the training mean)."""
    out = (data.astype(np.float32) - mean[:, None, None]) / std[:, None, None]
    out[:, ~valid] = 0.0
    return out


def pad_tile(data: np.ndarray, valid: np.ndarray, tile: Tile) -> tuple[np.ndarray, np.ndarray]:
    """Pad a read smaller than a tile (bottom/right) with zeros and invalid pixels."""
    if tile.pad_bottom == 0 and tile.pad_right == 0:
        return data, valid
    pads = ((0, tile.pad_bottom), (0, tile.pad_right))
    return np.pad(data, ((0, 0), *pads)), np.pad(valid, pads)


def read_tiles(
    scene: SceneInfo, grid: TileGrid, package: ModelPackage, stop: threading.Event
) -> Iterator[ReadTile]:
    """Read, normalize and pad each tile of ``grid`` in row-major order."""
    meta = package.metadata
    mean = np.asarray(meta.normalization.mean, dtype=np.float32)
    std = np.asarray(meta.normalization.std, dtype=np.float32)
    with rasterio.open(scene.path) as ds:
        for tile in grid:
            if stop.is_set():
                return
            data, valid = read_window(ds, tile.read, meta.band_indexes)
            data = normalize(data, valid, mean, std)
            data, valid = pad_tile(data, valid, tile)
            yield ReadTile(tile, data, valid)


_DONE = object()


def prefetch(items: Iterator[ReadTile], size: int, stop: threading.Event) -> Iterator[ReadTile]:
    """Run ``items`` in a background thread, at most ``size`` ahead; re-raise its errors here."""
    q: queue.Queue[object] = queue.Queue(maxsize=size)

    def work() -> None:
        try:
            for item in items:
                while not stop.is_set():
                    try:
                        q.put(item, timeout=0.1)
                        break
                    except queue.Full:
                        continue
        except BaseException as exc:
            q.put(exc)
        else:
            q.put(_DONE)

    thread = threading.Thread(target=work, name="geoseg-reader", daemon=True)
    thread.start()
    try:
        while True:
            item = q.get()
            if item is _DONE:
                return
            if isinstance(item, BaseException):
                raise item
            yield item  # type: ignore[misc]
    finally:
        stop.set()
        thread.join(timeout=5)


def batched(items: Iterator[ReadTile], size: int) -> Iterator[list[ReadTile]]:
    batch: list[ReadTile] = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


@dataclass(frozen=True)
class SceneWindow:
    """The part of a scene to predict: its pixel window and the AOI in the scene's CRS."""

    scene: SceneInfo
    window: PixelWindow
    aoi: BaseGeometry

    @property
    def output_grid(self) -> OutputGrid:
        return OutputGrid(
            crs=CRS.from_user_input(self.scene.crs),
            transform=self.scene.window_transform(self.window),
            height=self.window.height,
            width=self.window.width,
        )


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
    """Predict ``target`` and write the class and confidence rasters (tiled GeoTIFFs)."""
    t0 = time.perf_counter()
    predictor.check_tile_size(settings.tile_px)
    grid = grid or TileGrid.build(
        target.window, target.scene.shape, settings.tile_px, settings.overlap_px
    )
    package = predictor.package
    classes = package.metadata.class_infos()
    class_ids = package.class_ids
    acc = RowBandAccumulator(
        target.window,
        len(class_ids),
        settings.tile_px,
        blend_weights(settings.tile_px, settings.blend),
    )
    stats = PredictStats(tiles=len(grid), window_px=target.window.size_px)
    histogram = np.zeros(256, dtype=np.int64)
    out_grid = target.output_grid
    stop = threading.Event()
    tags = classes_tags(classes)
    with (
        RowBandWriter(
            classes_path, out_grid, nodata=CLASS_NODATA, classes=classes, tags=tags
        ) as cw,
        RowBandWriter(
            confidence_path, out_grid, nodata=None, tags={"GEOSEG_UNITS": "percent"}
        ) as fw,
    ):

        def flush(until_row: int) -> None:
            finished = acc.release(until_row)
            if finished is None:
                return
            n_rows = finished.probs.shape[1]
            rows = PixelWindow(finished.row_off, target.window.col_off, n_rows, target.window.width)
            inside = aoi_mask(target.aoi, target.scene.window_transform(rows), rows.shape)
            cls, conf = classes_and_confidence(finished.probs, finished.valid & inside, class_ids)
            row_in_out = finished.row_off - target.window.row_off
            cw.write_rows(row_in_out, cls)
            fw.write_rows(row_in_out, conf)
            histogram[:] += np.bincount(cls.ravel(), minlength=256)

        current_row = 0
        tiles = prefetch(
            read_tiles(target.scene, grid, package, stop), settings.prefetch_tiles, stop
        )
        for batch in batched(tiles, settings.batch_size):
            tm = time.perf_counter()
            probs = predictor(np.stack([b.data for b in batch]))
            stats.model_seconds += time.perf_counter() - tm
            for item, tile_probs in zip(batch, probs, strict=True):
                if item.tile.row != current_row:
                    flush(grid.rows_final_before(item.tile.row))
                    current_row = item.tile.row
                acc.add(item.tile, tile_probs, item.valid)
            if on_tiles is not None:
                on_tiles(len(batch))
        flush(target.window.row_end)
    stats.class_px = {i: int(n) for i, n in enumerate(histogram[:CLASS_NODATA]) if n}
    stats.valid_px = int(histogram[:CLASS_NODATA].sum())
    stats.seconds = time.perf_counter() - t0
    return stats
