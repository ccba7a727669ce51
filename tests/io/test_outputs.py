"""Class-raster styling written by `geoseg.io.raster`: the mosaic VRT carries its classes inline."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import rasterio
from affine import Affine

from geoseg.classes import CLASS_NODATA, ClassInfo, colormap
from geoseg.io.outputs import classes_from_tags, write_mosaic_vrt

CLASSES = (
    ClassInfo(0, "water", "#2b6cb0"),
    ClassInfo(2, "grassland", "#8fd16a"),
    ClassInfo(3, "built-up & roads", "#b0413e"),
)


def _class_raster(path: Path, x0: float, values: np.ndarray) -> Path:
    profile = {
        "driver": "GTiff",
        "width": values.shape[1],
        "height": values.shape[0],
        "count": 1,
        "dtype": "uint8",
        "crs": "EPSG:32633",
        "transform": Affine(10, 0, x0, 0, -10, 5_000_000),
        "nodata": CLASS_NODATA,
    }
    with rasterio.open(path, "w", **profile) as ds:
        ds.write(values, 1)
        ds.write_colormap(1, colormap(CLASSES))
    return path


def test_mosaic_vrt_has_a_short_named_palette_and_the_classes_tag(tmp_path: Path) -> None:
    a = _class_raster(tmp_path / "a.tif", 500_000, np.array([[0, 2], [3, 255]], np.uint8))
    b = _class_raster(tmp_path / "b.tif", 500_020, np.array([[3, 3], [0, 2]], np.uint8))
    vrt = write_mosaic_vrt([a, b], tmp_path / "mosaic.vrt", CLASSES)
    with rasterio.open(vrt) as ds:
        np.testing.assert_array_equal(ds.read(1), [[0, 2, 3, 3], [3, 255, 0, 2]])
        table = ds.colormap(1)
    # entries 0..3 only (id 1 is no class: transparent), so QGIS lists no unused values
    assert table == {
        0: (43, 108, 176, 255),
        1: (0, 0, 0, 0),
        2: (143, 209, 106, 255),
        3: (176, 65, 62, 255),
    }
    band = ET.parse(vrt).getroot().find("VRTRasterBand")
    assert band is not None
    names = [c.text or "" for c in band.iterfind("CategoryNames/Category")]
    assert names == ["water", "", "grassland", "built-up & roads"]
    assert classes_from_tags(vrt) == list(CLASSES)
