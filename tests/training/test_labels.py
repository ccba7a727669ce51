"""Reference labels: value mapping, grid checks, polygons rasterized per tile, class lists."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
import rasterio.features
import shapely
from affine import Affine

from geoseg.classes import ClassInfo
from geoseg.errors import ConfigError, TrainingDataError
from geoseg.geo.window import PixelWindow
from geoseg.training.data import SplitSettings, TileRef, TrainingData, TrainingScene
from geoseg.training.labels import LabelConfig, read_class_list
from tests.support.training import CRS, THREE, TRANSFORM, write_polygons, write_raster


def test_label_map_and_unknown_values(small_pair) -> None:
    image_path, labels_path, _, _ = small_pair
    scenes = [TrainingScene(image_path, labels_path)]
    merged = LabelConfig(THREE, value_map={1: 1, 2: 2, 3: 2}, nodata=frozenset({0}))
    with TrainingData(scenes, merged, band_indexes=[1], split=SplitSettings(20, 0.25)) as data:
        total = data.train_counts + data.val_counts
        assert total[2] == 0 and total[1] == 40 * 20 + 16  # urban mapped into forest
    with pytest.raises(TrainingDataError, match=r"labels.tif: label values \[0\]"):
        TrainingData(scenes, LabelConfig(THREE), band_indexes=[1])
    with pytest.raises(TrainingDataError, match=r"label values \[3\].*label_nodata"):
        TrainingData(
            scenes,
            LabelConfig(THREE, value_map={1: 1, 2: 2}, nodata=frozenset({0})),
            band_indexes=[1],
        )
    with pytest.raises(ConfigError, match="class ids \\[9\\]"):
        LabelConfig(THREE, value_map={1: 9})


def test_grid_and_crs_mismatch_are_clear_errors(small_pair, tmp_path: Path) -> None:
    image_path, _, _, labels = small_pair
    shifted = write_raster(
        tmp_path / "shifted.tif", labels, transform=TRANSFORM @ Affine.translation(1, 0)
    )
    with pytest.raises(TrainingDataError, match="resample the labels onto the image grid"):
        TrainingData(
            [TrainingScene(image_path, shifted)],
            LabelConfig(THREE, nodata=frozenset({0})),
            band_indexes=[1],
        )
    with pytest.raises(TrainingDataError, match="has 2 band"):
        TrainingData(
            [TrainingScene(image_path, tmp_path / "labels.tif")],
            LabelConfig(THREE, nodata=frozenset({0})),
            band_indexes=[1, 2, 3],
        )


def test_polygon_labels_rasterize_like_a_raster(small_pair, tmp_path: Path) -> None:
    image_path, labels_path, _, labels = small_pair
    shapes = rasterio.features.shapes(labels, transform=TRANSFORM)
    geoms, values = [], []
    for geom, value in shapes:
        if value:
            geoms.append(shapely.geometry.shape(geom))
            values.append(int(value))
    gpkg = write_polygons(tmp_path / "labels.gpkg", geoms, values)
    config = LabelConfig(THREE, nodata=frozenset({0}))
    split = SplitSettings(20, 0.25)
    with (
        TrainingData(
            [TrainingScene(image_path, labels_path)], config, band_indexes=[1], split=split
        ) as a,
        TrainingData([TrainingScene(image_path, gpkg)], config, band_indexes=[1], split=split) as b,
    ):
        assert a.train_counts.tolist() == b.train_counts.tolist()
        window = TileRef(0, PixelWindow(3, 7, 30, 33))
        assert (a.read(window)[1] == b.read(window)[1]).all()


def test_polygon_class_names_reprojection_and_errors(small_pair, tmp_path: Path) -> None:
    image_path, _, _, _ = small_pair
    left, top = TRANSFORM @ (0, 0)
    box = shapely.box(left + 100, top - 300, left + 300, top - 100)  # cols 10..30, rows 10..30
    gpkg = write_polygons(tmp_path / "names.gpkg", [box], ["Forest"], column="landcover")
    config = LabelConfig(THREE, class_column="landcover")
    with TrainingData([TrainingScene(image_path, gpkg)], config, band_indexes=[1]) as data:
        y = data.read(TileRef(0, PixelWindow(0, 0, 40, 60)))[1]
        assert (y[10:30, 10:30] == 1).all() and (y == 1).sum() == 400
    # the same box in lon/lat is reprojected onto the image grid
    from pyproj import Transformer

    to_ll = Transformer.from_crs(CRS, "EPSG:4326", always_xy=True)
    box_ll = shapely.transform(
        shapely.segmentize(box, 5), lambda xy: np.column_stack(to_ll.transform(*xy.T))
    )
    geojson = write_polygons(tmp_path / "ll.geojson", [box_ll], [2], crs="EPSG:4326")
    with TrainingData(
        [TrainingScene(image_path, geojson)], LabelConfig(THREE), band_indexes=[1]
    ) as data:
        y = data.read(TileRef(0, PixelWindow(0, 0, 40, 60)))[1]
        assert abs(int((y == 1).sum()) - 400) <= 24
    with pytest.raises(TrainingDataError, match=r"no class column 'class'.*landcover"):
        TrainingData([TrainingScene(image_path, gpkg)], LabelConfig(THREE), band_indexes=[1])
    bad = write_polygons(tmp_path / "bad.gpkg", [box], ["swamp"])
    with pytest.raises(TrainingDataError, match=r"class values \['swamp'\]"):
        TrainingData([TrainingScene(image_path, bad)], LabelConfig(THREE), band_indexes=[1])


def test_read_class_list_formats(tmp_path: Path) -> None:
    listed = tmp_path / "classes.json"
    listed.write_text(json.dumps([{"id": 1, "name": "Water", "color": "#0000ff"}]))
    assert read_class_list(listed) == (ClassInfo(1, "Water", "#0000ff"),)
    mapping = tmp_path / "classes.yaml"
    mapping.write_text("1: Water\n2: Forest\n")
    classes = read_class_list(mapping)
    assert [c.name for c in classes] == ["Water", "Forest"]
    assert all(c.color.startswith("#") for c in classes)
    broken = tmp_path / "broken.json"
    broken.write_text("[{")
    with pytest.raises(ConfigError, match="cannot read the class list"):
        read_class_list(broken)
