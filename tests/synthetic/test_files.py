"""Tests for geoseg.synthetic.files: the GeoTIFFs, the AOI polygon and GeoJSON, a whole scene."""

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
    SYNTHETIC_CLASSES,
    aoi_polygon,
    make_spec,
    render,
    write_aoi_geojson,
    write_scene,
    write_synthetic_scene,
)


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
