"""Preview pictures: read from overviews, class colours, legend, AOI outline, scale bar."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine
from PIL import Image
from rasterio.crs import CRS
from rasterio.enums import Resampling

from geoseg.classes import colormap
from geoseg.geo.scene import SceneGrid
from geoseg.io.outputs import PREVIEW_NAME, classes_tags
from geoseg.render.preview import (
    AOI_RGB,
    LEGEND_ROW_PX,
    MARGIN_PX,
    TITLE_PX,
    choose_overview,
    colorize,
    format_length,
    preview_size,
    scale_bar_length_m,
    write_preview,
)
from geoseg.synthetic import SYNTHETIC_CLASSES

FOREST, CROPLAND = SYNTHETIC_CLASSES[1], SYNTHETIC_CLASSES[3]


def test_the_coarsest_overview_with_enough_pixels_is_chosen() -> None:
    assert choose_overview(4096, [2, 4, 8, 16], 512) == 2  # 4096 / 8 = 512
    assert choose_overview(4000, [2, 4, 8, 16], 512) == 1  # 4000 / 8 = 500 is too small
    assert choose_overview(700, [2], 512) is None  # small rasters: full resolution
    assert choose_overview(700, [], 512) is None


@pytest.mark.parametrize(
    ("max_m", "bar_m", "text"),
    [(640, 500, "500 m"), (2600, 2000, "2 km"), (1.0, 1.0, "1 m"), (0.3, 0.2, "0.2 m")],
)
def test_scale_bar_is_a_round_length(max_m: float, bar_m: float, text: str) -> None:
    assert scale_bar_length_m(max_m) == pytest.approx(bar_m)
    assert format_length(scale_bar_length_m(max_m)) == text


def from_origin(west: float, north: float, xsize: float, ysize: float) -> Affine:
    """North-up transform (rasterio's from_origin without its deprecation warning)."""
    return Affine(xsize, 0, west, 0, -ysize, north)


def test_pixel_width_in_metres_for_projected_and_geographic_crs() -> None:
    utm = SceneGrid(CRS.from_epsg(32633), from_origin(500000, 5e6, 10, 10), 100, 100)
    assert utm.res_m[1] == pytest.approx(10.0)
    # 0.001 degree at 60 deg N: 111.195 km per degree * cos(60) = 55.6 m
    geo = SceneGrid(CRS.from_epsg(4326), from_origin(10, 60.05, 0.001, 0.001), 100, 100)
    assert geo.res_m[1] == pytest.approx(55.6, abs=0.1)


def class_raster_with_stale_overviews(path: Path) -> Path:
    """1024 px: forest at full resolution's overviews, cropland at full resolution.

    The overviews are built while every pixel is forest; then the full-resolution pixels are
    overwritten with cropland (GeoTIFF overviews are not updated). A picture made from the
    overviews is forest; one made from full resolution would be cropland.
    """
    profile = {
        "driver": "GTiff", "width": 1024, "height": 1024, "count": 1, "dtype": "uint8",
        "crs": "EPSG:32633", "transform": from_origin(500000, 5000000, 10, 10),
        "nodata": 255, "tiled": True, "blockxsize": 256, "blockysize": 256,
    }  # fmt: skip
    with rasterio.open(path, "w", **profile) as ds:
        ds.write(np.full((1, 1024, 1024), FOREST.id, dtype=np.uint8))
        ds.write_colormap(1, colormap(SYNTHETIC_CLASSES))
        ds.update_tags(**classes_tags(SYNTHETIC_CLASSES))
        ds.build_overviews([2, 4], Resampling.nearest)
    with rasterio.open(path, "r+") as ds:
        ds.write(np.full((1, 1024, 1024), CROPLAND.id, dtype=np.uint8))
    with rasterio.open(path) as ds:
        assert (ds.read(1) == CROPLAND.id).all()
    return path


def count_rgb(pixels: np.ndarray, rgb: tuple[int, int, int]) -> int:
    return int(np.all(pixels == np.array(rgb, dtype=np.uint8), axis=-1).sum())


def test_preview_is_read_from_an_overview_not_the_full_raster(tmp_path: Path) -> None:
    tif = class_raster_with_stale_overviews(tmp_path / "classes.tif")
    png = write_preview(tif, tmp_path / "preview.png")
    with Image.open(png) as im:
        assert im.format == "PNG"
        assert im.size == preview_size((512, 512), len(SYNTHETIC_CLASSES)) == (732, 558)
        pixels = np.asarray(im.convert("RGB"))
    y0 = TITLE_PX + MARGIN_PX
    map_area = pixels[y0 : y0 + 512, MARGIN_PX : MARGIN_PX + 512]
    assert count_rgb(map_area, FOREST.rgb) > 0.9 * 512 * 512  # from the 512 px overview
    assert count_rgb(map_area, CROPLAND.rgb) == 0  # never from full resolution
    assert count_rgb(pixels, CROPLAND.rgb) > 0  # cropland is in the legend only


def test_run_writes_a_preview_with_map_legend_and_aoi(run_256: Path) -> None:
    scene_dir = run_256 / "scene"
    record = json.loads((run_256 / "run.json").read_text())
    assert record["scenes"][0]["outputs"]["preview"] == str(scene_dir / PREVIEW_NAME)
    with rasterio.open(scene_dir / "classes.tif") as ds:
        values = ds.read(1)  # a small raster: the preview shows it at full resolution
    with Image.open(scene_dir / PREVIEW_NAME) as im:
        assert im.format == "PNG"
        legend_rows = len(SYNTHETIC_CLASSES) + 1  # + "no data / outside AOI"
        assert im.size == preview_size(values.shape, legend_rows)
        pixels = np.asarray(im.convert("RGB"))
    rows, cols = values.shape
    y0 = TITLE_PX + MARGIN_PX
    map_area = pixels[y0 : y0 + rows, MARGIN_PX : MARGIN_PX + cols]
    expected = colorize(values, SYNTHETIC_CLASSES)
    same = np.all(map_area == expected, axis=-1)
    assert same.mean() > 0.85  # all but the AOI outline, the scale bar and the frame
    for c in SYNTHETIC_CLASSES:
        if (values == c.id).sum() > 50:
            assert count_rgb(map_area, c.rgb) > 0, c.name
    assert count_rgb(map_area, AOI_RGB) > rows  # the outline runs around the AOI
    bottom_left = map_area[rows - 30 :, : cols // 2]
    assert count_rgb(bottom_left, (0, 0, 0)) > 20  # the scale bar and its label
    legend_x = MARGIN_PX + cols + MARGIN_PX + 7
    for i, c in enumerate(SYNTHETIC_CLASSES):  # swatches in class order
        assert tuple(pixels[y0 + i * LEGEND_ROW_PX + 7, legend_x]) == c.rgb, c.name
