"""TileGrid (full coverage, overlap, inward edge tiles, padding only for tiny scenes); BlockGrid."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from geoseg.errors import ConfigError
from geoseg.geo.grid import BlockGrid, TileGrid, axis_starts, stride_starts
from geoseg.geo.window import PixelWindow


def coverage(grid: TileGrid) -> np.ndarray:
    """How many tiles' output windows cover each pixel of the grid's window."""
    counts = np.zeros(grid.window.shape, dtype=int)
    for tile in grid:
        counts[tile.out.relative_to(grid.window)] += 1
    return counts


def test_odd_window_tile_256_overlap_32() -> None:
    scene = (2000, 1500)
    window = PixelWindow(100, 200, 777, 1000)
    grid = TileGrid.build(window, scene, tile_px=256, overlap_px=32)
    assert coverage(grid).min() >= 1
    for tile in grid:
        assert tile.read.shape == (256, 256)
        assert (tile.pad_bottom, tile.pad_right) == (0, 0)
        assert PixelWindow(0, 0, *scene).intersection(tile.read) == tile.read
    # context of overlap/2 = 16 px on each side; last tiles end exactly at the widened span
    assert grid.row_starts[0] == 100 - 16
    assert grid.row_starts[-1] + 256 == 100 + 777 + 16
    assert grid.col_starts[-1] + 256 == 200 + 1000 + 16
    for starts in (grid.row_starts, grid.col_starts):
        steps = np.diff(starts)
        assert steps.max() <= 256 - 32  # every neighbour overlaps by >= 32 px


def test_window_touching_scene_edges_shifts_inward() -> None:
    grid = TileGrid.build(PixelWindow(0, 0, 777, 1000), (777, 1000), tile_px=256, overlap_px=32)
    assert grid.row_starts[0] == 0
    assert grid.row_starts[-1] == 777 - 256
    assert grid.col_starts[-1] == 1000 - 256
    assert coverage(grid).min() >= 1


def test_scene_smaller_than_tile_is_padded() -> None:
    grid = TileGrid.build(PixelWindow(0, 0, 60, 100), (60, 100), tile_px=256, overlap_px=32)
    assert len(grid) == 1
    tile = next(iter(grid))
    assert tile.read == PixelWindow(0, 0, 60, 100)
    assert (tile.pad_bottom, tile.pad_right) == (196, 156)
    assert tile.out == tile.read
    assert tile.out_in_tile == (slice(0, 60), slice(0, 100))


def test_small_window_in_large_scene_gets_one_centred_tile() -> None:
    grid = TileGrid.build(PixelWindow(500, 500, 40, 30), (2000, 2000), tile_px=128, overlap_px=16)
    (tile,) = list(grid)
    assert tile.read.shape == (128, 128)
    assert tile.out == PixelWindow(500, 500, 40, 30)
    assert tile.read.row_off == 500 + 20 - 64


def test_axis_starts_formula() -> None:
    starts, length = axis_starts(0, 1000, 1000, tile_px=256, overlap_px=32, context_px=0)
    assert length == 256
    # n = ceil((1000 - 256) / 224) + 1 = 5, spread evenly over 744 px
    assert starts == (0, 186, 372, 558, 744)


@pytest.mark.parametrize(
    ("tile", "overlap", "message"),
    [(8, 0, "at least 16"), (256, 200, "half the tile"), (256, -1, "between 0")],
)
def test_bad_parameters_are_refused(tile: int, overlap: int, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        TileGrid.build(PixelWindow(0, 0, 100, 100), (100, 100), tile_px=tile, overlap_px=overlap)


def test_window_outside_scene_is_refused() -> None:
    with pytest.raises(ConfigError, match="not inside the scene"):
        TileGrid.build(PixelWindow(50, 50, 100, 100), (100, 100), tile_px=64, overlap_px=8)


@settings(max_examples=200, deadline=None)
@given(
    scene_h=st.integers(1, 900),
    scene_w=st.integers(1, 900),
    data=st.data(),
    tile=st.sampled_from([16, 32, 64, 96, 256]),
    overlap_frac=st.floats(0, 0.5),
)
def test_grid_invariants(
    scene_h: int, scene_w: int, data: st.DataObject, tile: int, overlap_frac: float
) -> None:
    r0 = data.draw(st.integers(0, scene_h - 1))
    c0 = data.draw(st.integers(0, scene_w - 1))
    h = data.draw(st.integers(1, scene_h - r0))
    w = data.draw(st.integers(1, scene_w - c0))
    overlap = int(tile // 2 * overlap_frac)
    window = PixelWindow(r0, c0, h, w)
    grid = TileGrid.build(window, (scene_h, scene_w), tile_px=tile, overlap_px=overlap)
    assert coverage(grid).min() >= 1
    scene = PixelWindow(0, 0, scene_h, scene_w)
    for t in grid:
        assert scene.intersection(t.read) == t.read  # never reads outside the scene
        assert t.read.height + t.pad_bottom == tile
        assert t.read.width + t.pad_right == tile
        assert t.pad_bottom == max(0, tile - scene_h)  # padding only for tiny scenes
        assert t.pad_right == max(0, tile - scene_w)
    for starts in (grid.row_starts, grid.col_starts):
        assert list(starts) == sorted(set(starts))
        if len(starts) > 1:
            assert np.diff(starts).max() <= tile - overlap
    finals = [grid.rows_final_before(r) for r in range(grid.shape[0] + 1)]
    assert finals == sorted(finals)
    assert finals[-1] == window.row_end


@settings(max_examples=150, deadline=None)
@given(
    height=st.integers(1, 300),
    width=st.integers(1, 300),
    block=st.integers(1, 128),
    row_off=st.integers(0, 50),
    col_off=st.integers(0, 50),
)
def test_block_grid_covers_its_region_once_row_major(
    height: int, width: int, block: int, row_off: int, col_off: int
) -> None:
    region = PixelWindow(row_off, col_off, height, width)
    grid = BlockGrid.covering(region, block)
    cover = np.zeros((row_off + height, col_off + width), dtype=int)
    windows = grid.windows()
    for w in windows:
        cover[w.row_off : w.row_end, w.col_off : w.col_end] += 1
        assert w.height <= block and w.width <= block
    assert (cover[row_off:, col_off:] == 1).all() and cover.sum() == height * width
    assert windows == sorted(windows, key=lambda w: (w.row_off, w.col_off))
    assert len(windows) == len(grid) == grid.n_rows * grid.n_cols
    for b in grid.blocks():  # seams: the edges shared with another block, not the outline
        assert b.seam_top == (b.grid_row > 0) and b.seam_left == (b.grid_col > 0)
        assert b.seam_bottom == (b.row_off + b.height < region.row_end)
        assert b.seam_right == (b.col_off + b.width < region.col_end)


def test_training_tile_starts_follow_a_fixed_stride() -> None:
    assert stride_starts(0, 100, 64, 32) == [0, 32, 36]
    assert stride_starts(10, 60, 64, 32) == [10]  # shorter than a tile: one start
    assert stride_starts(0, 256, 64, 64) == [0, 64, 128, 192]
