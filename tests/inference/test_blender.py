"""Blenders: the numpy and the torch (on CPU tensors) blender write the same rows, in order."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import shapely
import torch
from affine import Affine
from rasterio.crs import CRS

from geoseg.geo.grid import Tile, TileGrid
from geoseg.geo.scene import SceneGrid
from geoseg.geo.window import PixelWindow
from geoseg.inference.blender import (
    Blender,
    ClassRows,
    NumpyBlender,
    TorchBlender,
    scene_blender,
)
from geoseg.inference.predictor import Predictor
from geoseg.inference.reader import ReadTile
from geoseg.inference.scene import SceneWindow
from geoseg.inference.settings import PredictSettings
from geoseg.inference.stitch import blend_weights
from geoseg.io.raster import SceneInfo

CLASS_IDS = np.array([1, 2, 5, 7], dtype=np.uint8)
WINDOW = PixelWindow(9, 5, 280, 240)
TILE = 32


def synthetic_target(triangle: bool = True) -> SceneWindow:
    """A window of a 300 x 260 px scene that is never read, with a triangle or whole AOI."""
    grid = SceneGrid(CRS.from_epsg(32633), Affine(10, 0, 500_000, 0, -10, 6_000_000), 300, 260)
    scene = SceneInfo(Path("never-read.tif"), grid, 4, ("uint16",) * 4, None)
    left, bottom, right, top = grid.bounds
    if triangle:
        return SceneWindow(
            scene, WINDOW, shapely.Polygon([(left, top), (right, top), (left, bottom)])
        )
    return SceneWindow(scene, WINDOW, shapely.box(left, bottom, right, top))


def make_blender(kind: str, target: SceneWindow, grid: TileGrid) -> Blender:
    weights = blend_weights(grid.tile_px)
    if kind == "torch":
        return TorchBlender(target, grid, weights, CLASS_IDS, torch.device("cpu"))
    return NumpyBlender(target, grid, weights, CLASS_IDS)


def model_output(kind: str, probs: np.ndarray, valid: np.ndarray) -> tuple:
    """A batch's probabilities and valid masks as the model step hands them to this blender."""
    if kind == "torch":
        return torch.from_numpy(probs), torch.from_numpy(valid)
    return probs, list(valid)


def random_batch(tiles: list[Tile], rng: np.random.Generator) -> tuple[list[ReadTile], ...]:
    """Reads (no data needed), random class probabilities and valid masks for ``tiles``."""
    t = TILE
    probs = rng.dirichlet(np.ones(len(CLASS_IDS)), size=(len(tiles), t, t))
    probs = probs.transpose(0, 3, 1, 2).astype(np.float32)
    valid = rng.random((len(tiles), t, t)) > 0.1
    reads = [ReadTile(tile, np.empty((0,)), v) for tile, v in zip(tiles, valid, strict=True)]
    return reads, probs, valid


def whole_window(rows: list[ClassRows]) -> tuple[np.ndarray, np.ndarray]:
    """The rows stacked into the window's (classes, confidence), checking they follow on."""
    assert [r.row for r in rows] == list(np.cumsum([0] + [len(r.classes) for r in rows[:-1]]))
    return np.concatenate([r.classes for r in rows]), np.concatenate([r.confidence for r in rows])


def blend_all(kind: str, target: SceneWindow, grid: TileGrid, seed: int) -> list[ClassRows]:
    """Blend random batches of 3 tiles, some tiles and two whole tile rows skipped."""
    rng = np.random.default_rng(seed)
    blender = make_blender(kind, target, grid)
    tiles = [t for t in grid if t.row not in (2, 3) and rng.random() > 0.2]
    rows: list[ClassRows] = []
    for i in range(0, len(tiles), 3):
        reads, probs, valid = random_batch(tiles[i : i + 3], rng)
        rows += blender.add(reads, *model_output(kind, probs, valid))
    rows += blender.finish(target.window.row_end)
    return rows


@pytest.mark.parametrize("overlap", [0, 8, 12])
def test_numpy_and_torch_blenders_give_identical_rows(overlap: int) -> None:
    target = synthetic_target()
    grid = TileGrid.build(WINDOW, (300, 260), tile_px=TILE, overlap_px=overlap)
    expected = whole_window(blend_all("numpy", target, grid, seed=overlap))
    got = whole_window(blend_all("torch", target, grid, seed=overlap))
    assert got[0].shape == expected[0].shape == WINDOW.shape
    assert got[0].dtype == got[1].dtype == np.uint8
    np.testing.assert_array_equal(got[0], expected[0])
    np.testing.assert_array_equal(got[1], expected[1])
    nodata = expected[0] == 255
    assert 0.2 < nodata.mean() < 0.9  # the AOI triangle, skipped tiles and invalid pixels
    assert set(np.unique(expected[0][~nodata])) <= set(CLASS_IDS.tolist())
    assert (expected[1][nodata] == 0).all()


@pytest.mark.parametrize("kind", ["numpy", "torch"])
def test_rows_come_out_when_a_new_tile_row_starts(kind: str) -> None:
    target = synthetic_target(triangle=False)
    grid = TileGrid.build(WINDOW, (300, 260), tile_px=TILE, overlap_px=8)
    blender = make_blender(kind, target, grid)
    rng = np.random.default_rng(3)
    first_row = [t for t in grid if t.row == 0]
    assert list(blender.add(*_batch(kind, first_row, rng))) == []
    rows = list(blender.add(*_batch(kind, [grid.tile(1, 0)], rng)))
    assert sum(len(r.classes) for r in rows) == grid.rows_final_before(1) - WINDOW.row_off
    assert all(r.classes.shape[1] == WINDOW.width for r in rows)


@pytest.mark.parametrize("kind", ["numpy", "torch"])
def test_finish_past_the_band_gives_empty_rows(kind: str) -> None:
    """Rows that no tile reached (tile rows skipped) come out as nodata, confidence 0."""
    target = synthetic_target(triangle=False)
    grid = TileGrid.build(WINDOW, (300, 260), tile_px=TILE, overlap_px=8)
    blender = make_blender(kind, target, grid)
    first = grid.tile(0, 0)
    reads, probs, _ = random_batch([first], np.random.default_rng(4))
    valid = np.ones((1, TILE, TILE), dtype=bool)
    assert list(blender.add(reads, *model_output(kind, probs, valid))) == []
    classes, confidence = whole_window(list(blender.finish(WINDOW.row_end)))
    assert classes.shape == WINDOW.shape
    out = first.out.relative_to(WINDOW)
    assert (classes[out] != 255).all()
    reached = np.zeros(WINDOW.shape, dtype=bool)
    reached[out] = True
    assert (classes[~reached] == 255).all() and (confidence[~reached] == 0).all()
    assert list(blender.finish(WINDOW.row_end)) == []  # nothing left to release


@pytest.mark.parametrize("kind", ["numpy", "torch"])
def test_tiles_out_of_order_still_raise(kind: str) -> None:
    target = synthetic_target()
    grid = TileGrid.build(WINDOW, (300, 260), tile_px=TILE, overlap_px=0)
    blender = make_blender(kind, target, grid)
    rng = np.random.default_rng(5)
    list(blender.add(*_batch(kind, [grid.tile(2, 0)], rng)))
    with pytest.raises(RuntimeError, match="out of order"):
        list(blender.add(*_batch(kind, [grid.tile(0, 0)], rng)))


@pytest.mark.parametrize(
    ("blend_on_device", "expected"),
    [(None, NumpyBlender), (False, NumpyBlender), (True, TorchBlender)],
)
def test_scene_blender_follows_the_settings(
    cpu_predictor: Predictor, blend_on_device: bool | None, expected: type
) -> None:
    settings = PredictSettings(
        tile_px=TILE, overlap_px=8, batch_size=2, blend_on_device=blend_on_device
    )
    grid = TileGrid.build(WINDOW, (300, 260), tile_px=TILE, overlap_px=8)
    blender = scene_blender(synthetic_target(), grid, cpu_predictor, settings)
    assert type(blender) is expected


def _batch(kind: str, tiles: list[Tile], rng: np.random.Generator) -> tuple:
    reads, probs, valid = random_batch(tiles, rng)
    return (reads, *model_output(kind, probs, valid))
