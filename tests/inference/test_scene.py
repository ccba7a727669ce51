"""predict_scene: reading, normalization, batching, blending and writing, checked end to end."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch

from geoseg.geo.window import PixelWindow
from geoseg.inference.predictor import Predictor
from geoseg.inference.scene import SceneWindow
from geoseg.inference.stitch import RowBandAccumulator
from geoseg.io.aoi import aoi_in_crs, read_aoi
from geoseg.io.raster import RowBandWriter, open_scene
from geoseg.models.package import load_package
from tests.support.inference import predict, predict_with_stats, triangle_target


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


def test_skipping_tiles_without_valid_aoi_pixels_changes_nothing(
    scene_512, demo_model: Path, tmp_path: Path
) -> None:
    """Tiles over the nodata margin or outside a small AOI are skipped, outputs identical."""
    # a triangle over part of the scene: many tiles of its bounding window lie outside it
    target = triangle_target(scene_512.image_path)
    predictor = Predictor(load_package(demo_model), torch.device("cpu"))
    kw = {"tile_px": 64, "overlap_px": 16, "batch_size": 4}
    skip, stats_skip = predict_with_stats(target, predictor, tmp_path / "a", **kw)
    every, stats_all = predict_with_stats(
        target, predictor, tmp_path / "b", **kw, skip_empty_tiles=False
    )
    assert stats_all.skipped_tiles == 0
    assert stats_skip.skipped_tiles > stats_skip.tiles // 3
    np.testing.assert_array_equal(skip, every)  # classes and confidence
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
    kernels may round differently; tests/inference/test_gpu.py allows for that.)"""
    # a triangle AOI: skipped tiles, AOI masking on the host and the nodata margin
    target = triangle_target(scene_512.image_path)
    predictor = Predictor(load_package(demo_model), torch.device("cpu"))
    numpy_path = predict(target, predictor, tmp_path / "n", **settings, blend_on_device=False)
    torch_path = predict(target, predictor, tmp_path / "t", **settings, blend_on_device=True)
    assert (numpy_path[0] != 255).sum() > 0.2 * numpy_path[0].size
    assert (numpy_path[0] == 255).sum() > 0.2 * numpy_path[0].size
    np.testing.assert_array_equal(torch_path[0], numpy_path[0])
    np.testing.assert_array_equal(torch_path[1], numpy_path[1])
    assert (torch_path[1][numpy_path[0] == 255] == 0).all()


def stage_threads() -> set[str]:
    """Names of the blending and writer threads still running."""
    return {t.name for t in threading.enumerate()} & {"geoseg-blend", "geoseg-writer"}


class Broken(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        raise RuntimeError("model broke")


def test_an_error_in_the_model_propagates_and_stops_the_threads(
    target: SceneWindow, cpu_predictor: Predictor, tmp_path: Path
) -> None:
    cpu_predictor.model = Broken()
    with pytest.raises(RuntimeError, match="model broke"):
        predict(target, cpu_predictor, tmp_path, tile_px=64, overlap_px=16, batch_size=2)
    assert not stage_threads()


@pytest.mark.parametrize(
    "case", [("blend", False), ("blend", True), ("write", False), ("write", True)]
)
def test_an_error_in_blending_or_writing_propagates_and_stops_the_threads(
    target: SceneWindow,
    cpu_predictor: Predictor,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    case: tuple[str, bool],
) -> None:
    """An error in the blending or the writer thread reaches the caller (either blender)."""
    stage, blend_on_device = case

    def fail(*_args: object, **_kwargs: object) -> None:
        raise OSError(f"{stage} broke")

    if stage == "blend":
        monkeypatch.setattr(RowBandAccumulator, "add", fail)
    else:
        monkeypatch.setattr(RowBandWriter, "write_rows", fail)
    with pytest.raises(OSError, match=f"{stage} broke"):
        predict(target, cpu_predictor, tmp_path, tile_px=64, overlap_px=16, batch_size=2,
                blend_on_device=blend_on_device)  # fmt: skip
    assert not stage_threads()
