"""Scene windows to predict, `predict_scene` into a folder, random tiles: for tests/inference/."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import rasterio
import shapely

from geoseg.geo.grid import TileGrid
from geoseg.geo.window import PixelWindow
from geoseg.inference.predictor import Predictor
from geoseg.inference.reader import ReadTile
from geoseg.inference.scene import SceneWindow, predict_scene
from geoseg.inference.settings import PredictSettings, PredictStats
from geoseg.io.aoi import aoi_in_crs, aoi_window, read_aoi
from geoseg.io.raster import open_scene


def aoi_target(image_path: Path, aoi_path: Path) -> SceneWindow:
    """The window of a scene file that its AOI file covers."""
    scene = open_scene(image_path)
    geom = aoi_in_crs(read_aoi(aoi_path), scene.grid.crs)
    return SceneWindow(scene, aoi_window(geom, scene.grid), geom)


def triangle_target(image_path: Path) -> SceneWindow:
    """A triangle AOI over the upper left half of a scene: many tiles of its window lie outside."""
    scene = open_scene(image_path)
    left, bottom, right, top = scene.grid.bounds
    tri = shapely.Polygon([(left, top), (right, top), (left, bottom)])
    return SceneWindow(scene, aoi_window(tri, scene.grid), tri)


def predict(target: SceneWindow, predictor: Predictor, tmp: Path, **settings) -> np.ndarray:
    """`predict_scene` into ``tmp``: (2, rows, cols) classes and confidence as written."""
    return predict_with_stats(target, predictor, tmp, **settings)[0]


def predict_with_stats(
    target: SceneWindow, predictor: Predictor, tmp: Path, **settings
) -> tuple[np.ndarray, PredictStats]:
    """`predict`, with the `PredictStats` of the prediction."""
    tmp.mkdir(parents=True, exist_ok=True)
    stats = predict_scene(
        target,
        predictor,
        PredictSettings(**settings),
        classes_path=tmp / "c.tif",
        confidence_path=tmp / "p.tif",
    )
    with rasterio.open(tmp / "c.tif") as c, rasterio.open(tmp / "p.tif") as p:
        assert c.shape == target.window.shape
        assert stats.valid_px == int((c.read(1) != 255).sum())
        return np.stack([c.read(1), p.read(1)]), stats


def random_reads(predictor: Predictor, n: int = 3, tile: int = 64) -> list[ReadTile]:
    """``n`` tiles of raw values around the package's band means, a few pixels invalid."""
    grid = TileGrid.build(PixelWindow(0, 0, tile, n * tile), (tile, n * tile), tile, 0)
    rng = np.random.default_rng(0)
    mean = np.array(predictor.package.metadata.normalization.mean, dtype=np.float32)
    reads = []
    for t in grid:
        data = (mean[:, None, None] * rng.uniform(0.5, 1.5, (len(mean), tile, tile))).astype(
            np.float32
        )
        reads.append(ReadTile(t, data, rng.random((tile, tile)) > 0.05))
    return reads
