"""Where a scene lands on the mosaic grid, and its row bands read there (real GeoTIFFs)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine
from rasterio.crs import CRS

from geoseg.geo.scene import SceneGrid
from geoseg.mosaic.grid import aoi_margin, whole_pixel_shift
from geoseg.mosaic.place import Placement, place, read_rows, warped_view

UTM33 = CRS.from_epsg(32633)
MOSAIC = SceneGrid(UTM33, Affine(10, 0, 500_000, 0, -10, 5_000_000), 40, 60)
"""A 40 x 60 mosaic grid of 10 m pixels."""


def _scene(path: Path, transform: Affine, shape=(20, 30), crs=UTM33) -> Path:
    data = np.arange(shape[0] * shape[1], dtype=np.uint16).reshape(shape) % 250
    with rasterio.open(
        path, "w", driver="GTiff", width=shape[1], height=shape[0], count=1,
        dtype="uint8", crs=crs, transform=transform, nodata=255,
    ) as ds:  # fmt: skip
        ds.write(data.astype(np.uint8), 1)
    return path


@pytest.mark.parametrize(
    ("transform", "crs", "expected"),
    [
        (Affine(10, 0, 500_050, 0, -10, 4_999_900), UTM33, (10, 5)),
        (Affine(10, 0, 499_950, 0, -10, 5_000_100), UTM33, (-10, -5)),
        (Affine(10, 0, 500_055, 0, -10, 4_999_900), UTM33, None),  # half a pixel off
        (Affine(20, 0, 500_000, 0, -20, 5_000_000), UTM33, None),  # another pixel size
        (Affine(10, 0, 500_000, 0, -10, 5_000_000), CRS.from_epsg(32632), None),
    ],
)
def test_whole_pixel_shift_and_the_aoi_margin(transform: Affine, crs: CRS, expected) -> None:
    scene = SceneGrid(crs, transform, 20, 30)
    assert whole_pixel_shift(MOSAIC, scene) == expected
    # scenes on the mosaic's pixel lines are predicted on the AOI, others a diagonal beyond
    diagonal = math.hypot(transform.a, transform.e)
    assert aoi_margin(MOSAIC, scene) == (0.0 if expected is not None else diagonal)


def test_an_aligned_scene_is_copied_and_clipped_to_the_grid(tmp_path: Path) -> None:
    # starts 10 rows above and 40 columns right of the mosaic's corner: half of it is outside
    path = _scene(tmp_path / "s.tif", Affine(10, 0, 500_400, 0, -10, 5_000_100))
    with rasterio.open(path) as src:
        placement = place(MOSAIC, src)
        assert placement == Placement((0, 10), (40, 60), (-10, 40))
        band = read_rows(src, placement, (0, 40), fill=255)  # the footprint's 20 columns
        data = src.read(1)
    expected = np.full((40, 20), 255, np.uint8)
    expected[0:10] = data[10:20, 0:20]
    np.testing.assert_array_equal(band, expected)
    assert not placement.reaches(10, 40) and placement.reaches(5, 12)


def test_a_shifted_scene_is_warped_like_gdal_nearest_within_its_footprint(tmp_path: Path) -> None:
    path = _scene(tmp_path / "s.tif", Affine(10, 0, 500_104, 0, -10, 4_999_896))  # 0.4 px off
    with rasterio.open(path) as src:
        placement = place(MOSAIC, src)
        # rows 10.4-30.4 and cols 10.4-40.4 of the mosaic, plus a pixel of margin
        assert placement == Placement((9, 32), (9, 42), None)
        with warped_view(src, MOSAIC, 255) as view:
            whole = view.read(1)
            band = read_rows(view, placement, (4, 36), fill=255)
    np.testing.assert_array_equal(band, whole[4:36, 9:42])
    r1, c1 = placement.rows[1], placement.cols[1]
    assert (whole[r1:] == 255).all() and (whole[:, c1:] == 255).all()  # nothing outside
