"""Tests for geoseg.synthetic: determinism, windowing, classes, spectra, files and the AOI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
import shapely
from pyproj import Transformer
from shapely.geometry import box, shape

from geoseg.classes import CLASS_NODATA, colormap
from geoseg.errors import ConfigError
from geoseg.io.outputs import classes_from_tags
from geoseg.synthetic import (
    BAND_NAMES,
    BUILT_UP,
    CROPLAND,
    FOREST,
    GRASSLAND,
    SYNTHETIC_CLASSES,
    WATER,
    Landscape,
    aoi_polygon,
    make_landscape,
    make_spec,
    render,
    write_aoi_geojson,
    write_scene,
    write_synthetic_scene,
)


@pytest.fixture(scope="module")
def scene512() -> Landscape:
    return make_landscape(512, seed=7)


def _ndvi(image: np.ndarray) -> np.ndarray:
    red, nir = image[2].astype(np.float64), image[3].astype(np.float64)
    return (nir - red) / (nir + red)


def test_same_seed_same_scene_different_seed_different_scene() -> None:
    a = make_landscape((96, 128), seed=3)
    b = make_landscape((96, 128), seed=3)
    c = make_landscape((96, 128), seed=4)
    np.testing.assert_array_equal(a.image, b.image)
    np.testing.assert_array_equal(a.labels, b.labels)
    assert not np.array_equal(a.image, c.image)
    assert not np.array_equal(a.labels, c.labels)


@pytest.mark.parametrize("margin_px", [0, 40])
def test_window_equals_crop_of_full_render(margin_px: int) -> None:
    spec = make_spec(300, 420, seed=11, nodata_margin_px=margin_px)
    full_image, full_labels = render(spec, 0, 0, 300, 420)
    windows = [(0, 0, 300, 420), (0, 0, 1, 1), (17, 33, 64, 80), (150, 200, 150, 220)]
    windows += [(299, 0, 1, 420), (0, 419, 300, 1), (123, 7, 31, 257)]
    for row, col, h, w in windows:
        image, labels = render(spec, row, col, h, w)
        np.testing.assert_array_equal(image, full_image[:, row : row + h, col : col + w])
        np.testing.assert_array_equal(labels, full_labels[row : row + h, col : col + w])


def test_tiled_render_reassembles_full_render() -> None:
    spec = make_spec(200, 200, seed=5)
    full_image, full_labels = render(spec, 0, 0, 200, 200)
    image = np.zeros_like(full_image)
    labels = np.zeros_like(full_labels)
    for row in range(0, 200, 37):
        for col in range(0, 200, 53):
            h, w = min(37, 200 - row), min(53, 200 - col)
            image[:, row : row + h, col : col + w], labels[row : row + h, col : col + w] = render(
                spec, row, col, h, w
            )
    np.testing.assert_array_equal(image, full_image)
    np.testing.assert_array_equal(labels, full_labels)


def test_all_classes_present_with_at_least_one_percent(scene512: Landscape) -> None:
    counts = np.bincount(scene512.labels.ravel(), minlength=256)
    fractions = counts[: len(SYNTHETIC_CLASSES)] / scene512.labels.size
    assert counts[len(SYNTHETIC_CLASSES) :].sum() == 0
    assert (fractions >= 0.01).all(), fractions


def test_spectra_are_plausible(scene512: Landscape) -> None:
    ndvi = _ndvi(scene512.image)
    labels = scene512.labels
    mean = {c.id: float(ndvi[labels == c.id].mean()) for c in SYNTHETIC_CLASSES}
    assert mean[FOREST] > mean[GRASSLAND] > mean[CROPLAND] > max(mean[BUILT_UP], mean[WATER])
    water = scene512.image[:, labels == WATER].astype(np.float64)
    assert water[3].mean() < water[2].mean()
    built = scene512.image[:, labels == BUILT_UP].astype(np.float64).mean(axis=1)
    assert built[:3].mean() > scene512.image[:3].mean()  # built-up is brighter than average


def test_classes_are_not_separable_pixel_by_pixel(scene512: Landscape) -> None:
    """Noise and mixed pixels: each class overlaps another in NDVI, so context must help."""
    ndvi = _ndvi(scene512.image)
    labels = scene512.labels
    lo = {c.id: np.percentile(ndvi[labels == c.id], 1) for c in SYNTHETIC_CLASSES}
    hi = {c.id: np.percentile(ndvi[labels == c.id], 99) for c in SYNTHETIC_CLASSES}
    assert lo[FOREST] < hi[CROPLAND]
    assert lo[CROPLAND] < hi[BUILT_UP]
    assert lo[GRASSLAND] < hi[CROPLAND]


def test_value_range_and_dtypes(scene512: Landscape) -> None:
    assert scene512.image.shape == (4, 512, 512)
    assert scene512.image.dtype == np.uint16
    assert scene512.labels.dtype == np.uint8
    assert scene512.image.min() >= 1  # 0 is nodata
    assert np.percentile(scene512.image, 1) > 60
    assert np.percentile(scene512.image, 99) < 6500
    assert scene512.crs == "EPSG:32633"
    assert scene512.transform.a == 10.0 and scene512.transform.e == -10.0
    assert scene512.transform.c == 500000.0 and scene512.transform.f == 5000000.0 + 5120.0


def test_nodata_margin_is_consistent_between_image_and_labels() -> None:
    for seed in range(4):
        scene = make_landscape((160, 200), seed=seed, nodata_margin_px=30)
        image_nodata = (scene.image == 0).all(axis=0)
        assert ((scene.image == 0).any(axis=0) == image_nodata).all()
        np.testing.assert_array_equal(image_nodata, scene.labels == CLASS_NODATA)
        assert 0.02 < image_nodata.mean() < 0.4
        # The margin hugs an edge: the centre is always valid.
        assert not image_nodata[40:120, 40:160].any()
    assert not (make_landscape(64, seed=0).labels == CLASS_NODATA).any()


@pytest.mark.parametrize(
    ("args", "kwargs"),
    [
        ((15, 64, 0), {}),
        ((64, 8, 0), {}),
        ((64, 64, 0), {"nodata_margin_px": 40}),
        ((64, 64, 0), {"res_m": 0}),
        ((64, 64, 0), {"epsg": 999999}),
        ((64, 64, 0), {"epsg": 4326}),
    ],
)
def test_invalid_spec_options_raise_config_error(args: tuple, kwargs: dict) -> None:
    with pytest.raises(ConfigError):
        make_spec(*args, **kwargs)


def test_window_outside_scene_raises_config_error() -> None:
    spec = make_spec(64, 64, seed=0)
    with pytest.raises(ConfigError):
        render(spec, 32, 32, 64, 16)
    with pytest.raises(ConfigError):
        render(spec, 0, 0, 0, 16)


def test_spec_is_small_and_frozen() -> None:
    spec = make_spec(4000, 4000, seed=1)
    assert len(repr(spec)) < 200_000
    with pytest.raises(AttributeError):
        spec.seed = 2  # type: ignore[misc]
    assert spec == make_spec(4000, 4000, seed=1)


def test_write_scene_geotiffs(tmp_path: Path) -> None:
    spec = make_spec(300, 520, seed=2, nodata_margin_px=20, origin=(300000.0, 4000000.0))
    image_path, labels_path = tmp_path / "scene.tif", tmp_path / "labels.tif"
    write_scene(spec, image_path, labels_path, block_px=256)
    expected_image, expected_labels = render(spec, 0, 0, 300, 520)
    with rasterio.open(image_path) as src:
        assert src.crs.to_epsg() == 32633
        assert src.transform == spec.transform
        assert src.transform.c == 300000.0 and src.transform.f == 4000000.0
        assert src.nodata == 0 and src.dtypes == ("uint16",) * 4
        assert src.descriptions == BAND_NAMES
        assert src.profile["tiled"] and src.block_shapes[0] == (256, 256)
        assert src.compression.name.lower() == "deflate"
        np.testing.assert_array_equal(src.read(), expected_image)
    with rasterio.open(labels_path) as src:
        assert src.crs.to_epsg() == 32633 and src.transform == spec.transform
        assert src.nodata == CLASS_NODATA and src.dtypes == ("uint8",)
        table = src.colormap(1)
        for class_id, rgba in colormap(SYNTHETIC_CLASSES).items():
            assert table[class_id] == rgba
        np.testing.assert_array_equal(src.read(1), expected_labels)
    assert classes_from_tags(labels_path) == list(SYNTHETIC_CLASSES)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["labels.tif", "scene.tif"]


def test_write_scene_rejects_unaligned_blocks(tmp_path: Path) -> None:
    with pytest.raises(ConfigError):
        write_scene(make_spec(64, 64, 0), tmp_path / "a.tif", tmp_path / "b.tif", block_px=300)


@pytest.mark.parametrize("seed", [0, 1, 2, 3, 17])
def test_aoi_polygon_is_valid_irregular_and_inside(seed: int) -> None:
    spec = make_spec(400, 600, seed=seed)
    aoi = aoi_polygon(spec)
    left, top = spec.transform @ (0, 0)
    right, bottom = spec.transform @ (spec.width_px, spec.height_px)
    scene = box(left, bottom, right, top)
    assert aoi.is_valid and scene.contains(aoi)
    assert not aoi.buffer(-0.02 * (right - left)).is_empty  # a real area, not a sliver
    assert aoi.distance(scene.exterior) > 0.03 * min(right - left, top - bottom)
    assert 0.5 <= aoi.area / scene.area <= 0.7
    assert 12 <= len(aoi.exterior.coords) - 1 <= 20
    assert aoi.area < 0.97 * aoi.convex_hull.area  # non-convex
    assert aoi.equals(aoi_polygon(spec))
    assert not aoi.equals(aoi_polygon(spec, seed=seed + 100))


def test_aoi_geojson_round_trip(tmp_path: Path) -> None:
    spec = make_spec(256, 256, seed=9)
    aoi = aoi_polygon(spec)
    path = tmp_path / "aoi.geojson"
    write_aoi_geojson(aoi, spec.crs, path)
    collection = json.loads(path.read_text())
    assert collection["type"] == "FeatureCollection"
    geometry = shape(collection["features"][0]["geometry"])
    lon, lat = geometry.exterior.coords[0]
    assert 10 < lon < 20 and 40 < lat < 50  # lon/lat order, UTM 33N lies at 12..18 deg E
    assert shapely.is_ccw(geometry.exterior)  # RFC 7946 right-hand rule
    back = Transformer.from_crs("EPSG:4326", spec.crs, always_xy=True)
    restored = shapely.transform(geometry, back.transform, interleaved=False)
    original = np.asarray(aoi.exterior.coords)
    np.testing.assert_allclose(np.asarray(restored.exterior.coords), original, atol=1e-6, rtol=0)


def test_write_synthetic_scene(tmp_path: Path) -> None:
    out = tmp_path / "new" / "demo"
    scene = write_synthetic_scene(out, (128, 192), seed=4)
    assert scene.image_path == out / "scene.tif"
    assert scene.labels_path == out / "labels.tif"
    assert scene.aoi_path == out / "aoi.geojson"
    assert scene.spec == make_spec(128, 192, seed=4)
    with rasterio.open(scene.image_path) as src:
        assert (src.height, src.width, src.count) == (128, 192, 4)
    assert json.loads(scene.aoi_path.read_text())["features"]
