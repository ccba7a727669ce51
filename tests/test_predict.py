"""predict_scene: reading, normalization, batching, blending and writing, checked end to end."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch

from geoseg.geo.window import PixelWindow
from geoseg.inference.predictor import Predictor
from geoseg.inference.scene import SceneWindow, predict_scene
from geoseg.inference.settings import PredictSettings
from geoseg.io.aoi import aoi_in_crs, aoi_window, read_aoi
from geoseg.io.raster import open_scene
from geoseg.models.package import load_package


@pytest.fixture(scope="module")
def target(scene_512) -> SceneWindow:
    scene = open_scene(scene_512.image_path)
    geom = aoi_in_crs(read_aoi(scene_512.aoi_path), scene.grid.crs)
    return SceneWindow(scene, aoi_window(geom, scene.grid), geom)


def predict(target: SceneWindow, predictor: Predictor, tmp: Path, **settings) -> np.ndarray:
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
        return np.stack([c.read(1), p.read(1)])


def test_pointwise_model_through_the_whole_path_equals_a_single_pass(
    target: SceneWindow, demo_model: Path, tmp_path: Path
) -> None:
    """A 1x1-conv 'model' sees each pixel alone: tiling and blending must not change a pixel."""
    predictor = Predictor(load_package(demo_model), torch.device("cpu"))
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(4, 5, kernel_size=1).eval()
    predictor.model = conv
    tiled = predict(target, predictor, tmp_path / "a", tile_px=64, overlap_px=16, batch_size=3)

    meta = predictor.package.metadata
    with rasterio.open(target.scene.path) as ds:
        data = ds.read(window=target.window.to_rasterio()).astype(np.float32)
        valid = np.all(ds.read_masks(window=target.window.to_rasterio()) > 0, axis=0)
    x = (data - np.array(meta.normalization.mean)[:, None, None]) / np.array(
        meta.normalization.std
    )[:, None, None]
    with torch.inference_mode():
        probs = torch.softmax(conv(torch.from_numpy(x[None].astype(np.float32))), 1)[0].numpy()
    expected_cls = predictor.package.class_ids[probs.argmax(0)]
    expected_conf = np.rint(probs.max(0) * 100)
    inside = tiled[0] != 255
    assert inside.sum() > 0.4 * inside.size
    assert not (inside & ~valid).any()
    np.testing.assert_array_equal(tiled[0][inside], expected_cls[inside])
    assert np.abs(tiled[1][inside] - expected_conf[inside]).max() <= 1  # float rounding only


def boundary_distance(classes: np.ndarray) -> np.ndarray:
    """Chebyshev distance (px) of every pixel to the nearest pixel of another class."""
    from scipy import ndimage

    edge = np.zeros(classes.shape, dtype=bool)
    edge[:-1] |= classes[:-1] != classes[1:]
    edge[1:] |= classes[:-1] != classes[1:]
    edge[:, :-1] |= classes[:, :-1] != classes[:, 1:]
    edge[:, 1:] |= classes[:, :-1] != classes[:, 1:]
    return ndimage.distance_transform_cdt(~edge, metric="chessboard")


def test_tile_size_and_overlap_do_not_move_class_boundaries(
    target: SceneWindow, demo_model: Path, tmp_path: Path
) -> None:
    predictor = Predictor(load_package(demo_model), torch.device("cpu"))
    a = predict(target, predictor, tmp_path / "a", tile_px=256, overlap_px=64, batch_size=4)[0]
    b = predict(target, predictor, tmp_path / "b", tile_px=128, overlap_px=32, batch_size=4)[0]
    np.testing.assert_array_equal(a == 255, b == 255)
    differ = a != b
    assert differ.mean() < 0.02, f"{differ.mean():.2%} of pixels changed class"
    # the pixels that changed are on class boundaries, not whole regions or tile seams
    near = np.minimum(boundary_distance(a), boundary_distance(b)) <= 2
    assert (differ & ~near).sum() <= 0.001 * differ.size


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ({"batch_size": 1}, {"batch_size": 16}),
        ({"reader_threads": 1}, {"reader_threads": 4}),
        ({"prefetch_tiles": 1}, {"prefetch_tiles": 64}),
    ],
    ids=["batch-1-vs-16", "readers-1-vs-4", "lookahead-1-vs-64"],
)
def test_batching_and_threads_do_not_change_the_result(
    target: SceneWindow, demo_model: Path, tmp_path: Path, a: dict, b: dict
) -> None:
    predictor = Predictor(load_package(demo_model), torch.device("cpu"))
    base = {"tile_px": 128, "overlap_px": 16, "batch_size": 4}
    one = predict(target, predictor, tmp_path / "one", **{**base, **a})
    two = predict(target, predictor, tmp_path / "two", **{**base, **b})
    # float sums in another order may flip a pixel whose two best classes tie to ~1e-7
    assert (one[0] != two[0]).sum() <= 2
    assert np.abs(one[1].astype(int) - two[1]).max() <= 1


def test_tta_and_ensembles(target: SceneWindow, demo_model: Path, tmp_path: Path) -> None:
    package = load_package(demo_model)
    plain = predict(target, Predictor(package, torch.device("cpu")), tmp_path / "p",
                    tile_px=128, overlap_px=16, batch_size=4)  # fmt: skip
    twice = Predictor([package, package], torch.device("cpu"))
    same = predict(target, twice, tmp_path / "e", tile_px=128, overlap_px=16, batch_size=4)
    assert (plain[0] != same[0]).sum() <= 2  # averaging a model with itself changes nothing
    tta = Predictor(package, torch.device("cpu"), tta=True)
    assert len(tta.transforms) == 8
    augmented = predict(target, tta, tmp_path / "t", tile_px=128, overlap_px=16, batch_size=4)
    np.testing.assert_array_equal(plain[0] == 255, augmented[0] == 255)
    valid = plain[0] != 255
    assert (plain[0] != augmented[0])[valid].mean() < 0.03  # TTA refines, it does not relabel


def test_dihedral_transforms_invert() -> None:
    from geoseg.inference.predictor import DIHEDRAL_8

    x = torch.arange(2 * 3 * 4 * 4, dtype=torch.float32).reshape(2, 3, 4, 4)
    outputs = {tuple(t.forward(x).flatten().tolist()) for t in DIHEDRAL_8}
    assert len(outputs) == 8  # eight distinct flips/rotations
    for t in DIHEDRAL_8:
        torch.testing.assert_close(t.inverse(t.forward(x)), x)


def test_ensemble_with_other_classes_is_refused(demo_model: Path, tmp_path: Path) -> None:
    import zipfile

    from geoseg.errors import ModelPackageError

    other = tmp_path / "other.geoseg"
    with zipfile.ZipFile(demo_model) as src, zipfile.ZipFile(other, "w") as dst:
        dst.writestr("metadata.json", src.read("metadata.json").replace(b'"water"', b'"lake"'))
        dst.writestr("weights.safetensors", src.read("weights.safetensors"))
    with pytest.raises(ModelPackageError, match="classes differ"):
        Predictor([load_package(demo_model), load_package(other)], torch.device("cpu"))


def test_window_smaller_than_a_tile_in_a_tiny_scene(demo_model: Path, tmp_path: Path) -> None:
    from geoseg.synthetic import write_synthetic_scene

    small = write_synthetic_scene(tmp_path / "in", size_px=(60, 100), seed=12)
    scene = open_scene(small.image_path)
    geom = aoi_in_crs(read_aoi(small.aoi_path), scene.grid.crs)
    window = PixelWindow(0, 0, 60, 100)
    predictor = Predictor(load_package(demo_model), torch.device("cpu"))
    out = predict(SceneWindow(scene, window, geom), predictor, tmp_path / "o",
                  tile_px=256, overlap_px=32, batch_size=2)  # fmt: skip
    assert (out[0] != 255).any() and (out[0] == 255).any()


def test_batch_size_is_only_auto_filled_on_cuda(demo_model: Path) -> None:
    predictor = Predictor(load_package(demo_model), torch.device("cpu"))
    assert predictor.fill_device_batch_size(256, 4) is None  # CPU: the package default stands


def test_skipping_tiles_without_valid_aoi_pixels_changes_nothing(
    scene_512, demo_model: Path, tmp_path: Path
) -> None:
    """Tiles over the nodata margin or outside a small AOI are skipped, outputs identical."""
    import shapely

    scene = open_scene(scene_512.image_path)
    left, bottom, right, top = scene.grid.bounds
    # a triangle over part of the scene: many tiles of its bounding window lie outside it
    tri = shapely.Polygon([(left, top), (right, top), (left, bottom)])
    target = SceneWindow(scene, aoi_window(tri, scene.grid), tri)
    predictor = Predictor(load_package(demo_model), torch.device("cpu"))
    kw = {"tile_px": 64, "overlap_px": 16, "batch_size": 4}
    stats_skip = predict_scene(
        target,
        predictor,
        PredictSettings(**kw),
        classes_path=tmp_path / "a_c.tif",
        confidence_path=tmp_path / "a_p.tif",
    )
    stats_all = predict_scene(
        target,
        predictor,
        PredictSettings(**kw, skip_empty_tiles=False),
        classes_path=tmp_path / "b_c.tif",
        confidence_path=tmp_path / "b_p.tif",
    )
    assert stats_all.skipped_tiles == 0
    assert stats_skip.skipped_tiles > stats_skip.tiles // 3
    for name in ("c", "p"):
        with (
            rasterio.open(tmp_path / f"a_{name}.tif") as a,
            rasterio.open(tmp_path / f"b_{name}.tif") as b,
        ):
            np.testing.assert_array_equal(a.read(1), b.read(1))
    assert stats_skip.valid_px == stats_all.valid_px > 0


@pytest.mark.parametrize(
    "settings",
    [
        {"tile_px": 128, "overlap_px": 16, "batch_size": 3},
        {"tile_px": 64, "overlap_px": 24, "batch_size": 4, "prefetch_tiles": 2},
    ],
    ids=["128-16", "64-24"],
)
def test_blending_on_the_device_path_equals_the_numpy_path(
    scene_512, demo_model: Path, tmp_path: Path, settings: dict
) -> None:
    """The torch band + class/confidence (as on CUDA), forced on the CPU, writes the numpy
    path's rasters. Same model outputs and the same float32 operations in the same order
    (multiply then add, one tile at a time, division by the same weight sums, round half to
    even), so on the CPU both rasters are identical, confidence included. (On CUDA the
    kernels may round differently; tests/test_gpu.py allows for that.)"""
    import shapely

    scene = open_scene(scene_512.image_path)
    left, bottom, right, top = scene.grid.bounds
    # a triangle AOI: skipped tiles, AOI masking on the host and the nodata margin
    tri = shapely.Polygon([(left, top), (right, top), (left, bottom)])
    target = SceneWindow(scene, aoi_window(tri, scene.grid), tri)
    predictor = Predictor(load_package(demo_model), torch.device("cpu"))
    numpy_path = predict(target, predictor, tmp_path / "n", **settings, blend_on_device=False)
    torch_path = predict(target, predictor, tmp_path / "t", **settings, blend_on_device=True)
    assert (numpy_path[0] != 255).sum() > 0.2 * numpy_path[0].size
    assert (numpy_path[0] == 255).sum() > 0.2 * numpy_path[0].size
    np.testing.assert_array_equal(torch_path[0], numpy_path[0])
    np.testing.assert_array_equal(torch_path[1], numpy_path[1])
    assert (torch_path[1][numpy_path[0] == 255] == 0).all()


def test_blend_on_device_defaults_to_cuda_only() -> None:
    settings = PredictSettings(tile_px=64, overlap_px=0, batch_size=1)
    assert settings.blends_on_device(torch.device("cuda")) is True
    assert settings.blends_on_device(torch.device("cpu")) is False
    forced = PredictSettings(tile_px=64, overlap_px=0, batch_size=1, blend_on_device=True)
    assert forced.blends_on_device(torch.device("cpu")) is True


def test_reader_threads_default_follows_the_cpu_count(monkeypatch) -> None:
    import os

    from geoseg.inference import settings as predict_module

    for cores, expected in [(1, 2), (2, 2), (6, 6), (64, 8)]:
        monkeypatch.setattr(
            os, "sched_getaffinity", lambda _pid, n=cores: set(range(n)), raising=False
        )
        assert predict_module.default_reader_threads() == expected
        assert PredictSettings(tile_px=64, overlap_px=0, batch_size=1).reader_threads == expected
    assert (
        PredictSettings(tile_px=64, overlap_px=0, batch_size=1, reader_threads=3).reader_threads
        == 3
    )
