"""Tile reading: grid order whatever the threads and look-ahead, padding, the filter, batches."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest
import rasterio

from geoseg.geo.grid import TileGrid
from geoseg.geo.window import PixelWindow
from geoseg.inference.reader import TileFilter, batched, read_tiles
from geoseg.io.raster import open_scene
from tests.support.inference import triangle_target

BANDS = (1, 2, 3, 4)


def reader_threads() -> set[threading.Thread]:
    return {t for t in threading.enumerate() if t.name.startswith("geoseg-read")}


@pytest.mark.parametrize(("threads", "lookahead"), [(1, 1), (4, 7)])
def test_tiles_come_in_grid_order_as_read_directly(scene_512, threads: int, lookahead: int) -> None:
    scene = open_scene(scene_512.image_path)
    grid = TileGrid.build(PixelWindow(40, 30, 400, 450), scene.grid.shape, 128, 32)
    before = reader_threads()
    reads = list(read_tiles(scene, grid, BANDS, threads=threads, lookahead=lookahead))
    assert [r.tile for r in reads] == list(grid)
    with rasterio.open(scene.path) as ds:
        for read in reads:
            window = read.tile.read.to_rasterio()
            np.testing.assert_array_equal(read.data, ds.read(list(BANDS), window=window))
            masks = ds.read_masks(list(BANDS), window=window)
            np.testing.assert_array_equal(read.valid, np.all(masks > 0, axis=0))
            assert read.data.dtype == ds.dtypes[0] and read.data.shape == (4, 128, 128)  # as stored
    assert reader_threads() <= before  # the pool is shut down once the tiles are consumed


def test_tiles_of_a_scene_smaller_than_a_tile_are_padded_invalid(tmp_path: Path) -> None:
    from geoseg.synthetic import write_synthetic_scene

    small = write_synthetic_scene(tmp_path, size_px=(60, 100), seed=12)
    scene = open_scene(small.image_path)
    grid = TileGrid.build(PixelWindow(0, 0, 60, 100), scene.grid.shape, 128, 32)
    (read,) = read_tiles(scene, grid, BANDS)
    assert read.data.shape == (4, 128, 128) and read.valid.shape == (128, 128)
    assert (read.tile.pad_bottom, read.tile.pad_right) == (68, 28)
    assert not read.valid[60:].any() and not read.valid[:, 100:].any()
    assert (read.data[:, 60:] == 0).all() and (read.data[:, :, 100:] == 0).all()
    assert read.valid[:60, :100].any()


def test_stopping_early_shuts_the_readers_down(scene_512) -> None:
    scene = open_scene(scene_512.image_path)
    grid = TileGrid.build(PixelWindow(0, 0, 512, 512), scene.grid.shape, 64, 0)
    before = reader_threads()
    tiles = read_tiles(scene, grid, BANDS, threads=3, lookahead=8)
    next(tiles)
    assert reader_threads() - before
    tiles.close()
    assert reader_threads() <= before


def test_tile_filter_skips_and_reports_tiles_without_valid_aoi_pixels(scene_512) -> None:
    target = triangle_target(scene_512.image_path)
    grid = TileGrid.build(target.window, target.scene.grid.shape, 64, 16)
    reported: list[int] = []
    needed = TileFilter(target, on_skipped=reported.append)
    kept = [r for r in read_tiles(target.scene, grid, BANDS) if needed(r)]
    assert needed.skipped == sum(reported) == len(grid) - len(kept)
    assert needed.skipped > len(grid) // 3 and kept
    for read in kept:
        rows, cols = read.tile.out_in_tile
        assert read.valid[rows, cols].any()


def test_batched_groups_in_order_with_a_short_last_batch() -> None:
    assert list(batched(iter(range(7)), 3)) == [[0, 1, 2], [3, 4, 5], [6]]  # type: ignore[arg-type]
    assert list(batched(iter(range(4)), 2)) == [[0, 1], [2, 3]]  # type: ignore[arg-type]
    assert list(batched(iter([]), 5)) == []


@pytest.mark.parametrize(("n_cols", "threads"), [(1, 2), (7, 2), (22, 8), (5, 5), (9, 4)])
def test_column_bands_are_contiguous_balanced_and_use_every_thread(
    n_cols: int, threads: int
) -> None:
    from geoseg.inference.reader import column_band

    used = min(threads, n_cols)
    bands = [column_band(c, n_cols, used) for c in range(n_cols)]
    assert bands == sorted(bands) and set(bands) == set(range(used))  # contiguous, all used
    sizes = [bands.count(b) for b in range(used)]
    assert max(sizes) - min(sizes) <= 1
