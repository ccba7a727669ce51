"""AOI reading, reprojection and pixel windows."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import shapely
from affine import Affine
from rasterio.crs import CRS

from geoseg.geo.scene import SceneGrid
from geoseg.geo.window import PixelWindow
from geoseg.io.aoi import aoi_in_crs, aoi_mask, aoi_window, read_aoi
from geoseg.io.raster import SceneInfo
from geoseg.synthetic import aoi_polygon, make_spec
from tests.support.cli import write_geojson


def scene(width: int = 100, height: int = 80) -> SceneInfo:
    return SceneInfo(
        path=Path("s.tif"),
        grid=SceneGrid(CRS.from_epsg(32633), Affine(10, 0, 500000, 0, -10, 5000800), height, width),
        band_count=4,
        dtypes=("uint16",) * 4,
        nodata=0,
    )


def test_multipolygon_features_are_unioned(tmp_path: Path) -> None:
    a = shapely.geometry.mapping(shapely.box(0, 0, 1, 1))
    b = shapely.geometry.mapping(shapely.box(0.5, 0, 2, 1))
    aoi = read_aoi(write_geojson(tmp_path / "a.geojson", [a, b]))
    assert aoi.geometry.area == pytest.approx(2.0)
    assert aoi.crs == CRS.from_epsg(4326)


def test_reprojection_round_trips_the_synthetic_aoi(tmp_path: Path) -> None:
    from geoseg.synthetic import write_aoi_geojson

    spec = make_spec(512, 512, seed=3)
    original = aoi_polygon(spec)
    write_aoi_geojson(original, spec.crs, tmp_path / "aoi.geojson")
    back = aoi_in_crs(read_aoi(tmp_path / "aoi.geojson"), CRS.from_user_input(spec.crs))
    # edges straight in lon/lat bend by centimetres in UTM: far below a 10 m pixel
    assert shapely.hausdorff_distance(back, original) < 0.5
    assert shapely.symmetric_difference(back, original).area < original.area * 1e-4


def test_window_holds_exactly_the_pixel_centres_in_the_bounds() -> None:
    s = scene()
    geom = shapely.box(500000 + 14, 5000800 - 97, 500000 + 56, 5000800 - 26)  # x 1.4..5.6 px
    window = aoi_window(geom, s.grid)
    # centres at col + 0.5: cols 1..5 (1.5..5.5) and rows 3..9 (3.5..9.5) lie inside 2.6..9.7
    assert window == PixelWindow(3, 1, 7, 5)
    mask = aoi_mask(geom, s.grid.window_transform(window), window.shape)
    assert mask.all()


def test_window_is_clipped_to_the_scene_and_none_outside() -> None:
    s = scene()
    assert aoi_window(shapely.box(499000, 4999000, 500054, 5000800), s.grid) == PixelWindow(
        0, 0, 80, 5
    )
    assert aoi_window(shapely.box(0, 0, 10, 10), s.grid) is None
    # between pixel centres: touches the scene, covers no centre
    assert aoi_window(shapely.box(500001, 5000791, 500004, 5000799), s.grid) is None


def test_aoi_mask_is_pixel_centre_inside() -> None:
    tri = shapely.Polygon([(0, 0), (10.2, 0), (0, 10.2)])
    mask = aoi_mask(tri, Affine(1, 0, 0, 0, -1, 10), (10, 10))
    rows, cols = np.indices((10, 10))
    expected = (cols + 0.5) + (9 - rows + 0.5) < 10.2
    np.testing.assert_array_equal(mask, expected)


def test_self_intersecting_polygon_is_repaired_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    bowtie = {"type": "Polygon", "coordinates": [[[0, 0], [2, 2], [2, 0], [0, 2], [0, 0]]]}
    path = write_geojson(tmp_path / "bowtie.geojson", [bowtie])
    with caplog.at_level("WARNING", logger="geoseg"):
        aoi = read_aoi(path)
    assert aoi.geometry.is_valid
    assert aoi.geometry.area == pytest.approx(2.0)  # two triangles of 1 each
    assert len(shapely.get_parts(aoi.geometry)) == 2
    (record,) = caplog.records
    assert str(path) in record.getMessage() and "Self-intersection" in record.getMessage()
