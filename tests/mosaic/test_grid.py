"""Where a mosaic lies: UTM zone of the AOI, snapped grid over its bounds, CRS refusals."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import shapely
from affine import Affine
from hypothesis import given, settings
from hypothesis import strategies as st
from rasterio.crs import CRS

from geoseg.errors import ConfigError
from geoseg.geo.scene import SceneGrid
from geoseg.io.aoi import Aoi
from geoseg.mosaic import mosaic_crs, mosaic_grid, utm_crs
from geoseg.mosaic.grid import grid_phase, grid_phase_of, whole_pixel_shift


@pytest.mark.parametrize(
    ("lon", "lat", "epsg"),
    [(15.0, 45.0, 32633), (11.99, 45.0, 32632), (12.0, 45.0, 32633), (-122.4, 37.8, 32610),
     (18.4, -33.9, 32734), (180.0, 10.0, 32660), (-180.0, 10.0, 32601)],
)  # fmt: skip
def test_utm_zone_of_a_point(lon: float, lat: float, epsg: int) -> None:
    assert utm_crs(lon, lat).to_epsg() == epsg


def _aoi(lon: float, lat: float) -> Aoi:
    box = shapely.box(lon - 0.01, lat - 0.01, lon + 0.01, lat + 0.01)
    return Aoi(Path("aoi.geojson"), box, CRS.from_epsg(4326))


def test_default_crs_is_the_utm_zone_of_the_aoi_centroid() -> None:
    assert mosaic_crs(_aoi(12.005, 45.0), None).to_epsg() == 32633


def test_a_geographic_or_unknown_crs_is_refused_with_the_fix() -> None:
    with pytest.raises(ConfigError, match=r"--crs EPSG:4326: a geographic CRS.*EPSG:326zz"):
        mosaic_crs(_aoi(15.0, 45.0), "EPSG:4326")
    with pytest.raises(ConfigError, match=r"--crs EPSG:99999999: not a CRS"):
        mosaic_crs(_aoi(15.0, 45.0), "EPSG:99999999")
    assert mosaic_crs(_aoi(15.0, 45.0), "EPSG:3035").to_epsg() == 3035


@settings(max_examples=80, deadline=None)
@given(
    st.floats(-1e6, 1e6), st.floats(-1e6, 1e6), st.floats(1, 5e4), st.floats(1, 5e4),
    st.sampled_from([10.0, 20.0, 30.0, 0.5]),
)  # fmt: skip
def test_grid_is_snapped_and_covers_the_aoi_bounds_by_less_than_a_pixel(
    x: float, y: float, w: float, h: float, pixel: float
) -> None:
    geometry = shapely.box(x, y, x + w, y + h)
    grid = mosaic_grid(geometry, CRS.from_epsg(32633), pixel)
    left, bottom, right, top = grid.bounds
    assert grid.transform.a == pixel and grid.transform.e == -pixel
    for edge in (left, top):
        assert math.isclose(edge / pixel, round(edge / pixel), abs_tol=1e-6)
    slack = 1e-6 * max(1.0, abs(x), abs(y))
    assert left <= x + slack and top >= y + h - slack
    assert right >= x + w - slack and bottom <= y + slack
    assert right - (x + w) < pixel + slack and y - bottom < pixel + slack
    assert x - left <= pixel and top - (y + h) <= pixel


def test_the_mosaic_takes_the_pixel_lines_of_the_scenes_in_its_crs() -> None:
    """Landsat's 30 m lines lie 15 m past multiples of 30: a mosaic on multiples would shift
    every scene by half a pixel; on their lines it copies them."""
    crs = CRS.from_epsg(32612)
    landsat = SceneGrid(crs, Affine(30, 0, 301905, 0, -30, 4154085), 1428, 1128)
    other_zone = SceneGrid(CRS.from_epsg(32613), Affine(30, 0, 10, 0, -30, 20), 9000, 9000)
    sentinel = SceneGrid(crs, Affine(10, 0, 300000, 0, -10, 4200000), 100, 100)
    phase = grid_phase([other_zone, sentinel, landsat], crs, 30.0)
    assert phase == (15.0, 15.0)
    grid = mosaic_grid(shapely.box(302000, 4150000, 303000, 4151000), crs, 30.0, phase)
    assert whole_pixel_shift(grid, landsat) is not None and grid_phase_of(grid) == phase
    assert grid_phase([other_zone, sentinel], crs, 30.0) == (0.0, 0.0)  # none at 30 m here
    bigger = SceneGrid(crs, Affine(30, 0, 300000, 0, -30, 4200000), 2000, 2000)
    assert grid_phase([landsat, bigger], crs, 30.0) == (0.0, 0.0)  # the most pixels win
