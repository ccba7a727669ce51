"""Tiles from the scene file: threaded windowed reads, padding, the empty-tile filter, batches.

`read_tiles` reads the grid's tiles in row-major order with a pool of threads (one GDAL handle
per thread) and a bounded look-ahead; `TileFilter` drops tiles that cannot change the outputs;
`batched` groups tiles for the model.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import rasterio
import shapely
import shapely.prepared

from geoseg.geo.grid import Tile, TileGrid
from geoseg.io.pixels import ReadPlan
from geoseg.io.raster import SceneInfo

if TYPE_CHECKING:
    from geoseg.inference.scene import SceneWindow


@dataclass(frozen=True)
class ReadTile:
    """A tile's model input (bands, t, t), its valid mask and masked pixels (t, t).

    ``data`` is float32 when the read plan converts units, else the stored dtype (`ReadPlan`).
    ``valid`` is what the model may read (input nodata excluded); ``masked`` the valid pixels
    a cloud/quality mask drops from the outputs (None without a mask).
    """

    tile: Tile
    data: np.ndarray
    valid: np.ndarray
    masked: np.ndarray | None = None

    @property
    def output_valid(self) -> np.ndarray:
        """Pixels the outputs keep: valid input that no mask drops."""
        return self.valid if self.masked is None else self.valid & ~self.masked


def pad_tile(data: np.ndarray, valid: np.ndarray, tile: Tile) -> tuple[np.ndarray, np.ndarray]:
    """Pad a read smaller than a tile (bottom/right) with zeros and invalid pixels."""
    if tile.pad_bottom == 0 and tile.pad_right == 0:
        return data, valid
    pads = ((0, tile.pad_bottom), (0, tile.pad_right))
    return np.pad(data, ((0, 0), *pads)), np.pad(valid, pads)


class _TileReader:
    """Reads and pads tiles of one scene, each calling thread with its own dataset handle."""

    def __init__(self, path: Path, plan: ReadPlan):
        self._path = path
        self._plan = plan
        self._local = threading.local()
        self._handles: list[rasterio.io.DatasetReader] = []
        self._lock = threading.Lock()

    def __call__(self, tile: Tile) -> ReadTile:
        ds = getattr(self._local, "ds", None)
        if ds is None:
            ds = self._local.ds = rasterio.open(self._path)
            with self._lock:
                self._handles.append(ds)
        data, valid, masked = self._plan.read(ds, tile.read)
        data, valid = pad_tile(data, valid, tile)
        if masked is not None:
            _, masked = pad_tile(data[:0], masked, tile)
        return ReadTile(tile, data, valid, masked)

    def close(self) -> None:
        """Close every thread's handle (once the threads are done)."""
        for ds in self._handles:
            ds.close()


def column_band(col: int, n_cols: int, threads: int) -> int:
    """The reader thread of tile column ``col``: ``col x threads // n_cols``.

    Each thread owns a contiguous band of tile columns, so a tile's upper neighbour (always)
    and its left neighbour (except at band edges) were read by the same thread, through the
    same GDAL handle, whose block cache still holds the blocks their overlap shares: those
    blocks are decoded (and, remote, fetched) once instead of once per thread.
    """
    return col * threads // max(n_cols, 1)


def read_tiles(
    scene: SceneInfo,
    grid: TileGrid,
    plan: ReadPlan | Sequence[int],
    *,
    threads: int = 2,
    lookahead: int = 32,
) -> Iterator[ReadTile]:
    """Read and pad each tile of ``grid``, in row-major order, with a pool of reader threads.

    ``plan`` says which bands to read and how to convert and mask them (band indexes alone:
    used as stored). Every thread opens its own dataset handle (GDAL handles are not
    thread-safe) and reads one band of tile columns (`column_band`); at most ``lookahead``
    tiles are read ahead of the consumer, so memory stays bounded.
    """
    if not isinstance(plan, ReadPlan):
        plan = ReadPlan.stored(plan)
    read_one = _TileReader(scene.path, plan)
    n_cols = grid.shape[1]
    n_threads = max(1, min(threads, n_cols))
    pools = [ThreadPoolExecutor(1, thread_name_prefix=f"geoseg-read{i}") for i in range(n_threads)]

    def submit(tile: Tile) -> Future[ReadTile]:
        return pools[column_band(tile.col, n_cols, n_threads)].submit(read_one, tile)

    tiles = iter(grid)
    pending: deque[Future[ReadTile]] = deque(submit(t) for t in islice(tiles, max(1, lookahead)))
    try:
        while pending:
            item = pending.popleft().result()
            following = next(tiles, None)
            if following is not None:
                pending.append(submit(following))
            yield item
    finally:
        for pool in pools:
            pool.shutdown(wait=True, cancel_futures=True)
        read_one.close()


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
    """Lists of ``size`` consecutive items (the last one shorter)."""
    batch: list[ReadTile] = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch
