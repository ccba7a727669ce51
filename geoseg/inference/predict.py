"""Tiled prediction of one scene window: read tiles -> batched model -> blended row bands -> files.

Reader threads (one GDAL handle each) read ahead into a bounded window of tiles, so reading
overlaps inference; the calling thread batches tiles through the model(s) and feeds the
streaming accumulator; a writer thread turns finished rows into class and confidence rows on
disk. Nothing is scene-sized.
"""

from __future__ import annotations

import os
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import Any, NamedTuple, TypeVar

import numpy as np
import rasterio
import shapely
import shapely.prepared
import torch
from shapely.geometry.base import BaseGeometry
from torch import nn

from geoseg.classes import CLASS_NODATA
from geoseg.errors import ConfigError, ModelPackageError
from geoseg.geo.grid import Tile, TileGrid
from geoseg.geo.scene import SceneGrid
from geoseg.geo.window import PixelWindow
from geoseg.inference.stitch import (
    BlendKind,
    RowBandAccumulator,
    blend_weights,
    classes_and_confidence,
)
from geoseg.inference.stitch_torch import TorchRowBandAccumulator, classes_and_confidence_torch
from geoseg.io.aoi import aoi_mask
from geoseg.io.outputs import classes_tags
from geoseg.io.raster import RowBandWriter, SceneInfo, read_window
from geoseg.models.package import ModelPackage
from geoseg.models.registry import required_multiple

ArrayT = TypeVar("ArrayT", np.ndarray, torch.Tensor)


def default_reader_threads() -> int:
    """Tile reader threads when none are asked for: one per CPU core, at least 2, at most 8."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return max(2, min(8, cores))


@dataclass(frozen=True)
class PredictSettings:
    """How to tile and batch a scene; defaults come from the model package."""

    tile_px: int
    overlap_px: int
    batch_size: int
    blend: BlendKind = BlendKind.HANN
    reader_threads: int = field(default_factory=default_reader_threads)
    """Threads reading tiles, one GDAL handle each; default `default_reader_threads`."""
    prefetch_tiles: int | None = None
    """Tiles read ahead of the model; default two batches (memory: tiles x bands x t^2 x 4 B)."""
    skip_empty_tiles: bool = True
    """Do not run the model on tiles without valid input inside the AOI (same outputs)."""
    blend_on_device: bool | None = None
    """Blend and compute class/confidence with torch on the predictor's device, so only uint8
    rows come back to the host; None: on CUDA only (the numpy path is faster on a CPU)."""

    def blends_on_device(self, device: torch.device) -> bool:
        if self.blend_on_device is None:
            return device.type == "cuda"
        return self.blend_on_device


@dataclass
class PredictStats:
    """What one scene's prediction did, for the summary and run.json."""

    tiles: int = 0
    window_px: int = 0
    valid_px: int = 0
    class_px: dict[int, int] = field(default_factory=dict)
    seconds: float = 0.0
    model_seconds: float = 0.0
    skipped_tiles: int = 0
    """Tiles not run through the model: no valid input pixel inside the AOI in their output."""


def resolve_device(name: str) -> torch.device:
    """``auto`` picks CUDA when present; asking for CUDA without one is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError("--device cuda: no CUDA device is available here; use --device cpu")
    if name != "cpu" and not name.startswith("cuda"):
        raise ConfigError(f"--device {name!r}: use auto, cpu or cuda")
    return torch.device(name)


class Dihedral(NamedTuple):
    """One of the 8 flips/rotations of a square tile: rotate ``k`` quarter turns, then flip."""

    k: int
    flip: bool

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.rot90(x, self.k, dims=(-2, -1))
        return torch.flip(x, dims=(-1,)) if self.flip else x

    def inverse(self, y: torch.Tensor) -> torch.Tensor:
        y = torch.flip(y, dims=(-1,)) if self.flip else y
        return torch.rot90(y, -self.k, dims=(-2, -1))


IDENTITY = (Dihedral(0, False),)
DIHEDRAL_8 = tuple(Dihedral(k, f) for k in range(4) for f in (False, True))


def check_ensemble(packages: Sequence[ModelPackage]) -> None:
    """Models averaged together must predict the same classes from the same bands."""
    first = packages[0]
    for other in packages[1:]:
        a, b = first.metadata, other.metadata
        if [c.model_dump() for c in a.classes] != [c.model_dump() for c in b.classes]:
            raise ModelPackageError(
                f"{other.path}: its classes differ from those of {first.path}; an ensemble "
                "averages probabilities, so every --model must have the same class list"
            )
        if a.band_indexes != b.band_indexes or a.dtype != b.dtype:
            raise ModelPackageError(
                f"{other.path}: reads bands {b.band_indexes} ({b.dtype}) but {first.path} "
                f"reads {a.band_indexes} ({a.dtype}); ensemble models must share their inputs"
            )


class Predictor:
    """One or more packages' models on a device: raw tile batches in, mean probabilities out.

    Each model normalizes the raw bands with its own package statistics; with ``tta`` every
    model also sees the 8 flips/rotations of each tile. All probabilities are averaged.
    """

    def __init__(
        self,
        packages: ModelPackage | Sequence[ModelPackage],
        device: torch.device,
        *,
        tta: bool = False,
        compile_model: bool = False,
    ):
        self.packages = [packages] if isinstance(packages, ModelPackage) else list(packages)
        check_ensemble(self.packages)
        self.device = device
        self.transforms = DIHEDRAL_8 if tta else IDENTITY
        self.models: list[nn.Module] = []
        self._stats: list[tuple[torch.Tensor, torch.Tensor]] = []
        for package in self.packages:
            # channels_last: faster convolutions with cuDNN and with oneDNN on CPU alike
            model = package.build().to(device).to(memory_format=torch.channels_last)
            if compile_model:
                model = torch.compile(model)
            self.models.append(model)
            norm = package.metadata.normalization
            mean = torch.tensor(norm.mean, dtype=torch.float32, device=device)
            std = torch.tensor(norm.std, dtype=torch.float32, device=device)
            self._stats.append((mean[:, None, None], std[:, None, None]))
        self.multiple = max(required_multiple(m) for m in self.models)
        # CUDA: one pinned host buffer per (shape, dtype) of batch, reused across batches,
        # with the event of its last host-to-device copy (wait for it before refilling)
        self._staging: dict[tuple[tuple[int, ...], str], tuple[torch.Tensor, Any]] = {}

    @property
    def package(self) -> ModelPackage:
        """The first package: classes, bands and tile defaults of the run."""
        return self.packages[0]

    @property
    def model(self) -> nn.Module:
        return self.models[0]

    @model.setter
    def model(self, module: nn.Module) -> None:
        """Replace the (single) model, e.g. with a pointwise one in tests."""
        self.models = [module]

    def check_tile_size(self, tile_px: int) -> None:
        """The encoder needs sizes divisible by its stride; name the nearest sizes that work."""
        if tile_px % self.multiple:
            lower = tile_px // self.multiple * self.multiple
            raise ConfigError(
                f"--tile-size {tile_px}: this model needs a multiple of {self.multiple} px; "
                f"use {max(lower, self.multiple)} or {lower + self.multiple}"
            )

    def fill_device_batch_size(self, tile_px: int, n_bands: int, cap: int = 64) -> int | None:
        """On CUDA, the batch that fills ~60 % of free memory (probed with one tile); else None.

        The peak memory of one probe tile (all models, TTA included) is taken as the cost per
        tile, which errs on the safe side: activations are freed between layers.
        """
        if self.device.type != "cuda":
            return None
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(self.device)
        before = torch.cuda.memory_allocated(self.device)
        probe = np.zeros((1, n_bands, tile_px, tile_px), dtype=np.float32)
        self(probe, np.ones((1, tile_px, tile_px), dtype=bool))
        per_tile = max(torch.cuda.max_memory_allocated(self.device) - before, 1)
        free, _ = torch.cuda.mem_get_info(self.device)
        return int(max(1, min(cap, 0.6 * free // per_tile)))

    def __call__(self, raw: np.ndarray, valid: np.ndarray) -> np.ndarray:
        """(B, bands, t, t) raw values + (B, t, t) valid mask -> (B, classes, t, t) float32."""
        return self.probabilities(raw, valid)[0].cpu().numpy()

    def probabilities(
        self, raw: np.ndarray, valid: np.ndarray
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Like `__call__`, but the probabilities stay on the device, returned with the valid
        mask (B, t, t) bool as transferred there. On CUDA the work may still be queued: use
        the tensors on the current stream (or synchronize) before reading them."""
        x = self._to_device(raw)
        v = self._to_device(valid)
        total: torch.Tensor | None = None
        with torch.inference_mode(), self._autocast():
            for model, (mean, std) in zip(self.models, self._stats, strict=True):
                xn = normalize(x, v, mean, std).contiguous(memory_format=torch.channels_last)
                for t in self.transforms:
                    probs = t.inverse(torch.softmax(model(t.forward(xn)).float(), dim=1))
                    total = probs if total is None else total + probs
            n = len(self.models) * len(self.transforms)
            assert total is not None
            return (total / n if n > 1 else total), v

    def _to_device(self, array: np.ndarray) -> torch.Tensor:
        """The array as a tensor on the device; on CUDA through a reused pinned buffer."""
        if self.device.type != "cuda":
            return torch.from_numpy(array)
        key = (array.shape, array.dtype.str)
        entry = self._staging.get(key)
        if entry is None:
            if len(self._staging) >= 4:  # other tile or batch sizes: drop the old buffers
                for _, done in self._staging.values():
                    done.synchronize()
                self._staging.clear()
            pinned = torch.from_numpy(np.empty_like(array)).pin_memory()
        else:
            pinned, done = entry
            done.synchronize()  # the previous copy out of this buffer has finished
        np.copyto(pinned.numpy(), array)
        out = pinned.to(self.device, non_blocking=True)
        done = torch.cuda.Event()
        done.record(torch.cuda.current_stream(self.device))
        self._staging[key] = (pinned, done)
        return out

    def _autocast(self) -> torch.autocast:
        if self.device.type == "cuda":
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return torch.autocast("cpu", enabled=False)


@dataclass(frozen=True)
class ReadTile:
    """A tile's raw input (bands, t, t) as float32 and its valid-pixel mask (t, t)."""

    tile: Tile
    data: np.ndarray
    valid: np.ndarray


def normalize(data: ArrayT, valid: ArrayT, mean: ArrayT, std: ArrayT) -> ArrayT:
    """``(x - mean) / std`` per band, 0 (the training mean) where invalid.

    Works on numpy arrays and torch tensors alike: ``data`` is (..., bands, H, W), ``valid``
    (..., H, W), ``mean``/``std`` (bands, 1, 1).
    """
    return (data - mean) / std * valid[..., None, :, :]


def pad_tile(data: np.ndarray, valid: np.ndarray, tile: Tile) -> tuple[np.ndarray, np.ndarray]:
    """Pad a read smaller than a tile (bottom/right) with zeros and invalid pixels."""
    if tile.pad_bottom == 0 and tile.pad_right == 0:
        return data, valid
    pads = ((0, tile.pad_bottom), (0, tile.pad_right))
    return np.pad(data, ((0, 0), *pads)), np.pad(valid, pads)


def read_tiles(
    scene: SceneInfo,
    grid: TileGrid,
    band_indexes: Sequence[int],
    *,
    threads: int = 2,
    lookahead: int = 32,
) -> Iterator[ReadTile]:
    """Read and pad each tile of ``grid``, in row-major order, with a pool of reader threads.

    Every thread opens its own dataset handle (GDAL handles are not thread-safe); at most
    ``lookahead`` tiles are read ahead of the consumer, so memory stays bounded.
    """
    local = threading.local()
    handles: list[rasterio.io.DatasetReader] = []
    lock = threading.Lock()

    def read_one(tile: Tile) -> ReadTile:
        ds = getattr(local, "ds", None)
        if ds is None:
            ds = local.ds = rasterio.open(scene.path)
            with lock:
                handles.append(ds)
        data, valid = read_window(ds, tile.read, band_indexes)
        data, valid = pad_tile(data.astype(np.float32), valid, tile)
        return ReadTile(tile, data, valid)

    pool = ThreadPoolExecutor(max(1, threads), thread_name_prefix="geoseg-read")
    tiles = iter(grid)
    pending: deque[Future[ReadTile]] = deque(
        pool.submit(read_one, t) for t in islice(tiles, max(1, lookahead))
    )
    try:
        while pending:
            item = pending.popleft().result()
            following = next(tiles, None)
            if following is not None:
                pending.append(pool.submit(read_one, following))
            yield item
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        for ds in handles:
            ds.close()


class TileFilter:
    """Keeps tiles whose output region has valid input inside the AOI; counts the others.

    A skipped tile could only have contributed to pixels that end up nodata anyway (outside
    the AOI or without input), so skipping it leaves the outputs unchanged.
    """

    def __init__(self, target: SceneWindow, on_skipped: Callable[[int], None] | None = None):
        self._aoi = shapely.prepared.prep(target.aoi)
        self._scene = target.scene
        self._on_skipped = on_skipped
        self.skipped = 0

    def __call__(self, item: ReadTile) -> bool:
        rows, cols = item.tile.out_in_tile
        keep = bool(item.valid[rows, cols].any()) and self._aoi.intersects(
            shapely.box(*self._scene.grid.window_bounds(item.tile.out))
        )
        if not keep:
            self.skipped += 1
            if self._on_skipped is not None:
                self._on_skipped(1)
        return keep


def batched(items: Iterator[ReadTile], size: int) -> Iterator[list[ReadTile]]:
    batch: list[ReadTile] = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


class BackgroundWorker:
    """Runs ``fn(item)`` for submitted items in one thread, in order, at most ``depth`` queued.

    An error in the thread is re-raised in the caller at the next `submit` or at `close`.
    """

    _STOP = object()

    def __init__(self, fn: Callable[[Any], None], depth: int = 2, name: str = "geoseg-writer"):
        self._fn = fn
        self._queue: queue.Queue[object] = queue.Queue(maxsize=depth)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while (item := self._queue.get()) is not self._STOP:
            if self._error is None:
                try:
                    self._fn(item)
                except BaseException as exc:
                    self._error = exc

    def submit(self, item: object) -> None:
        self._raise_if_failed()
        self._queue.put(item)

    def close(self) -> None:
        """Wait for queued items to finish; re-raise the worker's error, if any (idempotent)."""
        if self._thread.is_alive():
            self._queue.put(self._STOP)
            self._thread.join()
        self._raise_if_failed()

    def _raise_if_failed(self) -> None:
        if self._error is not None:
            raise self._error


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
