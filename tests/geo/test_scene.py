"""SceneGrid: a pixel grid on the map; pixel sizes in metres; GDAL's pixel-to-map formula."""

from __future__ import annotations

import math

import numpy as np
import pyproj
import pytest
import shapely
from affine import Affine
from rasterio.crs import CRS

from geoseg.geo.scene import METRES_PER_DEGREE, SceneGrid, affine_xy, map_xy, measure_m
from geoseg.geo.window import PixelWindow

UTM = CRS.from_epsg(32633)


def test_window_grid_shares_the_pixels_with_a_shifted_origin() -> None:
    grid = SceneGrid(UTM, Affine(10, 0, 500000, 0, -10, 5001000), 100, 200)
    assert grid.shape == (100, 200)
    assert grid.bounds == (500000, 5000000, 502000, 5001000)
    window = PixelWindow(10, 20, 30, 40)
    sub = grid.window(window)
    assert sub == SceneGrid(UTM, Affine(10, 0, 500200, 0, -10, 5000900), 30, 40)
    assert sub.bounds == grid.window_bounds(window) == (500200, 5000600, 500600, 5000900)


def test_sizes_in_metres_for_a_projected_grid() -> None:
    grid = SceneGrid(UTM, Affine(10, 0, 500000, 0, -20, 5001000), 50, 50)
    assert grid.res_m == (20.0, 10.0)  # (row, col): height, width
    assert grid.gsd_m == 15.0
    assert grid.pixel_area_m2 == pytest.approx(200.0)
    feet = SceneGrid(CRS.from_epsg(2227), Affine(10, 0, 6e6, 0, -10, 2e6), 10, 10)  # US ft
    assert feet.res_m == pytest.approx((3.048006, 3.048006))
    assert feet.pixel_area_m2 == pytest.approx(3.048006**2, rel=1e-6)


def test_sizes_in_metres_for_a_geographic_grid_at_its_centre_latitude() -> None:
    grid = SceneGrid(CRS.from_epsg(4326), Affine(0.001, 0, 10, 0, -0.001, 60.05), 100, 100)
    height_m, width_m = grid.res_m
    assert height_m == pytest.approx(0.001 * METRES_PER_DEGREE)  # 111.2 m
    assert width_m == pytest.approx(0.001 * METRES_PER_DEGREE * math.cos(math.radians(60)))
    assert grid.gsd_m == pytest.approx((height_m + width_m) / 2)
    # the centre pixel on the ellipsoid: within 1 % of the sphere's rectangle (60 deg N)
    assert grid.pixel_area_m2 == pytest.approx(height_m * width_m, rel=1e-2)


def test_map_xy_is_gdals_formula_vertex_for_vertex() -> None:
    transform = Affine(0.1, 0.02, 7.0, -0.03, -0.1, 50.0)  # rotated and sheared on purpose
    xy = np.array([[0.0, 0.0], [3.0, 0.0], [3.0, 2.0], [0.0, 0.0]])
    expected = np.column_stack(
        (7.0 + 0.1 * xy[:, 0] + 0.02 * xy[:, 1], 50.0 + -0.03 * xy[:, 0] + -0.1 * xy[:, 1])
    )
    assert np.array_equal(affine_xy(xy, transform), expected)
    (polygon,) = map_xy(np.array([shapely.Polygon(xy)]), transform)
    assert np.array_equal(shapely.get_coordinates(polygon), expected)


def test_measures_of_a_square_and_a_square_with_a_hole() -> None:
    square = shapely.box(0, 0, 100, 100)
    holed = shapely.Polygon(square.exterior, [shapely.box(10, 10, 20, 20).exterior])
    area, perimeter = measure_m(np.array([square, holed]), pyproj.CRS.from_epsg(32633))
    assert area.tolist() == [10000.0, 9900.0]
    assert perimeter.tolist() == [400.0, 440.0]  # holes count in the perimeter
