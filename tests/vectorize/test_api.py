"""The file stage (geoseg.vectorize.api): class raster in, attributed and styled GeoPackage out."""

from __future__ import annotations

import shutil
import sqlite3
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pyogrio
import pyproj
import pytest
import rasterio
import shapely
from affine import Affine
from pyogrio.raw import read as ogr_read

from geoseg.classes import ClassInfo
from geoseg.errors import ConfigError, SceneError
from geoseg.geo.scene import measure_m
from geoseg.io.outputs import classes_for_raster, write_category_names
from geoseg.vectorize import (
    BUILTIN_FIELDS,
    Connectivity,
    VectorizeOptions,
    polygonize_array,
    sieve_threshold_px,
    vectorize_raster,
)
from tests.support.gpkg import LAYER
from tests.support.rasters import (
    CLASSES,
    ND,
    PIXEL_AREA,
    TRANSFORM,
    UTM,
    all_nodata,
    landscape,
    map_coordinates,
    noise,
    ring_with_island,
    write_tif,
)

# --------------------------------------------------------------------------- vectorize_raster


@pytest.fixture
def scene(tmp_path: Path) -> tuple[Path, Path, np.ndarray, np.ndarray]:
    array = landscape()
    array[10:20, 250:270] = 7  # a class value missing from the class list
    rng = np.random.default_rng(11)
    confidence = rng.integers(0, 101, array.shape).astype(np.uint8)
    confidence[array == ND] = 255
    classes_tif = write_tif(tmp_path / "classes.tif", array)
    confidence_tif = write_tif(tmp_path / "confidence.tif", confidence, nodata=255)
    return classes_tif, confidence_tif, array, confidence


def test_vectorize_raster_writes_attributed_styled_layer(
    scene: tuple[Path, Path, np.ndarray, np.ndarray], tmp_path: Path
) -> None:
    classes_tif, confidence_tif, array, confidence = scene
    out = tmp_path / "out" / "polygons.gpkg"
    out.parent.mkdir()
    extra = {"scene": "S2B_20240601_T33TWN", "model_sha256": "ab" * 32}
    result = vectorize_raster(
        classes_tif,
        out,
        classes=CLASSES,
        confidence_path=confidence_tif,
        extra_attributes=extra,
    )
    assert result.path == out
    assert sorted(p.name for p in out.parent.iterdir()) == ["polygons.gpkg", "polygons.qml"]

    info = pyogrio.read_info(out, layer="landcover")
    assert info["crs"] == UTM
    assert info["geometry_type"] == "Polygon"
    assert info["features"] == result.n_polygons
    assert list(info["fields"]) == [*BUILTIN_FIELDS, "scene", "model_sha256"]
    types = dict(zip(info["fields"], info["ogr_types"], strict=True))
    assert types["class_id"] == "OFTInteger"
    assert types["class_name"] == types["scene"] == "OFTString"
    assert types["area_m2"] == types["perimeter_m"] == types["mean_confidence"] == "OFTReal"

    _, _, wkb, fields = ogr_read(out, layer="landcover")
    columns = dict(zip(info["fields"], fields, strict=True))
    geoms = shapely.from_wkb(wkb)
    table = polygonize_array(array, TRANSFORM, confidence=np.where(array == ND, np.nan, confidence))
    assert np.array_equal(columns["class_id"], table.class_id)
    names = {c.id: c.name for c in CLASSES} | {7: "class 7"}
    assert list(columns["class_name"]) == [names[c] for c in table.class_id]
    np.testing.assert_allclose(columns["area_m2"], table.pixel_count * PIXEL_AREA, rtol=1e-12)
    np.testing.assert_allclose(columns["perimeter_m"], shapely.length(geoms), rtol=1e-12)
    np.testing.assert_allclose(columns["mean_confidence"], table.mean_confidence, rtol=1e-12)
    assert ((columns["mean_confidence"] >= 0) & (columns["mean_confidence"] <= 100)).all()
    assert set(columns["scene"]) == {extra["scene"]}
    assert set(columns["model_sha256"]) == {extra["model_sha256"]}

    for cid in [*range(5), 7]:
        in_class = table.class_id == cid
        assert result.polygons_per_class[cid] == in_class.sum()
        assert result.area_m2_per_class[cid] == pytest.approx(
            np.count_nonzero(array == cid) * PIXEL_AREA, rel=1e-12
        )
    assert sum(result.polygons_per_class.values()) == result.n_polygons

    qml = ET.parse(out.with_suffix(".qml")).getroot()
    labels = {c.get("value"): c.get("label") for c in qml.iter("category")}
    assert labels == {str(k): v for k, v in names.items()}


def test_vectorize_raster_eight_connected_is_multipolygon_layer(
    scene: tuple[Path, Path, np.ndarray, np.ndarray], tmp_path: Path
) -> None:
    classes_tif, _, array, _ = scene
    result = vectorize_raster(
        classes_tif, tmp_path / "p8.gpkg", classes=CLASSES, connectivity=Connectivity.EIGHT
    )
    info = pyogrio.read_info(result.path, layer="landcover")
    assert info["geometry_type"] == "MultiPolygon"
    assert info["features"] == result.n_polygons
    assert result.n_polygons == len(
        polygonize_array(array, TRANSFORM, connectivity=Connectivity.EIGHT)
    )
    _, _, _, fields = ogr_read(result.path, layer="landcover")
    assert np.isnan(fields[list(info["fields"]).index("mean_confidence")]).all()


def test_vectorize_raster_all_nodata_gives_empty_layer(tmp_path: Path) -> None:
    tif = write_tif(tmp_path / "classes.tif", all_nodata())
    result = vectorize_raster(tif, tmp_path / "p.gpkg", classes=CLASSES)
    assert result.n_polygons == 0
    assert result.polygons_per_class == {c.id: 0 for c in CLASSES}
    info = pyogrio.read_info(result.path, layer="landcover")
    assert info["features"] == 0
    assert list(info["fields"]) == list(BUILTIN_FIELDS)


def test_vectorize_raster_uses_mask_not_only_255(tmp_path: Path) -> None:
    """A foreign class raster with nodata=0: those pixels are not vectorized."""
    array = ring_with_island()
    array[array == ND] = 0
    tif = write_tif(tmp_path / "classes.tif", array, nodata=0)
    result = vectorize_raster(tif, tmp_path / "p.gpkg", classes=CLASSES)
    assert 0 not in {k for k, v in result.polygons_per_class.items() if v}
    assert result.n_polygons == 3


def test_vectorize_raster_refuses_bad_inputs(tmp_path: Path) -> None:
    out = tmp_path / "p.gpkg"
    no_crs = write_tif(tmp_path / "nocrs.tif", noise(), crs=None)
    with pytest.raises(SceneError, match=r"nocrs\.tif.*no CRS.*gdal_edit"):
        vectorize_raster(no_crs, out, classes=CLASSES)

    garbage = tmp_path / "garbage.tif"
    garbage.write_bytes(b"not a tiff at all")
    with pytest.raises(SceneError, match=r"garbage\.tif.*cannot be read"):
        vectorize_raster(garbage, out, classes=CLASSES)
    with pytest.raises(SceneError, match=r"missing\.tif"):
        vectorize_raster(tmp_path / "missing.tif", out, classes=CLASSES)

    good = write_tif(tmp_path / "classes.tif", noise())
    small = write_tif(tmp_path / "conf.tif", np.zeros((5, 5), np.uint8), nodata=255)
    with pytest.raises(SceneError, match=r"conf\.tif.*grid"):
        vectorize_raster(good, out, classes=CLASSES, confidence_path=small)

    floats = write_tif(tmp_path / "floats.tif", noise().astype(np.float32), nodata=None)
    with pytest.raises(SceneError, match=r"floats\.tif.*float32"):
        vectorize_raster(floats, out, classes=CLASSES)

    with pytest.raises(ConfigError, match="area_m2"):
        vectorize_raster(good, out, classes=CLASSES, extra_attributes={"area_m2": "x"})
    assert not out.exists()


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"block_size_px": 0}, "--block-size"),
        ({"workers": -1}, "--workers"),
        ({"min_area_m2": -1.0}, "--min-area"),
        ({"simplify_m": float("nan")}, "--simplify"),
    ],
)
def test_bad_options_are_refused(options: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        VectorizeOptions(**options)


def test_sieve_threshold_is_the_pixels_a_region_needs() -> None:
    assert sieve_threshold_px(0.0, 100.0) == 0  # no sieve
    assert sieve_threshold_px(250.0, 100.0) == 3
    assert sieve_threshold_px(200.0, 100.0) == 2  # exactly 2 pixels survive
    assert sieve_threshold_px(0.1 * 3, 0.1) == 3  # 3.0000000000000004: float noise, not a 4th
    assert sieve_threshold_px(100.0, 0.0) == 0


def test_classes_from_colour_table_and_category_names(tmp_path: Path) -> None:
    tif = write_tif(tmp_path / "c.tif", np.array([[0, 1], [3, 3]], dtype=np.uint8))
    with rasterio.open(tif, "r+") as ds:
        ds.write_colormap(1, {0: (10, 20, 30, 255), 1: (0, 0, 0, 255), 3: (1, 2, 3, 255)})
    write_category_names(tif, (ClassInfo(0, "lake", "#000000"), ClassInfo(1, "asphalt", "#000000")))
    assert classes_for_raster(tif) == (
        ClassInfo(0, "lake", "#0a141e"),
        ClassInfo(1, "asphalt", "#000000"),  # black but named: a class
        ClassInfo(3, "class 3", "#010203"),
    )
    plain = write_tif(tmp_path / "plain.tif", np.zeros((2, 2), np.uint8))
    assert classes_for_raster(plain) == ()
    result = vectorize_raster(plain, tmp_path / "p.gpkg", classes=())
    assert result.class_names == {0: "class 0"}


@pytest.mark.skipif(shutil.which("ogrinfo") is None, reason="GDAL's ogrinfo CLI not on PATH")
def test_ogr_reads_style_and_attributes(client, tifs, tmp_path: Path) -> None:
    tif, _ = tifs["river"]
    out = vectorize_raster(
        tif,
        tmp_path / "p.gpkg",
        classes=CLASSES,
        extra_attributes={"scene": "river"},
        options=VectorizeOptions(block_size_px=100),
        client=client,
    ).path
    summary = subprocess.run(
        ["ogrinfo", "-ro", "-so", str(out), LAYER], capture_output=True, text=True, check=True
    ).stdout
    for column, kind in [
        ("class_id", "Integer"),
        ("class_name", "String"),
        ("pixel_count", "Integer64"),
        ("area_m2", "Real"),
        ("perimeter_m", "Real"),
        ("mean_confidence", "Real"),
        ("scene", "String"),
    ]:
        assert f"{column}: {kind}" in summary, summary
    styles = subprocess.run(
        ["ogrinfo", "-ro", str(out), "-sql",
         "SELECT f_table_name, f_geometry_column, useAsDefault, styleQML FROM layer_styles"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    assert f"f_table_name (String) = {LAYER}" in styles
    assert "f_geometry_column (String) = geom" in styles
    assert "useAsDefault (Integer(Boolean)) = 1" in styles
    assert 'type="categorizedSymbol"' in styles and 'attr="class_id"' in styles
    with sqlite3.connect(out) as con:
        qml = con.execute("SELECT styleQML FROM layer_styles").fetchone()[0]
    root = ET.fromstring(qml.split("\n", 1)[1])
    labels = {c.get("value"): c.get("label") for c in root.iter("category")}
    assert labels == {str(c.id): c.name for c in CLASSES}
    assert "Feature Count: " in summary and "32633" in summary


# --------------------------------------------------------------------------- areas in metres


def test_area_in_feet_crs_is_converted_to_square_metres() -> None:
    crs = pyproj.CRS.from_epsg(2227)  # NAD83 / California zone 3 (ftUS)
    transform = Affine(10.0, 0.0, 6_000_000.0, 0.0, -10.0, 2_100_000.0)  # 10 ftUS pixels
    table = polygonize_array(ring_with_island(), transform)
    area, perimeter = measure_m(table.geometry, crs)
    ft_us = 1200 / 3937
    np.testing.assert_allclose(area, table.pixel_count * (10 * ft_us) ** 2, rtol=1e-12)
    np.testing.assert_allclose(perimeter, shapely.length(table.geometry) * ft_us, rtol=1e-12)


def _geodesic_box(
    transform: Affine, *, rows: tuple[int, int], cols: tuple[int, int]
) -> tuple[float, float]:
    """WGS84 area and perimeter of the pixel box ``rows`` x ``cols`` (ends excluded)."""
    (x0, x1), (y0, y1) = map_coordinates(transform, list(cols), list(rows))
    a, p = pyproj.Geod(ellps="WGS84").polygon_area_perimeter([x0, x1, x1, x0], [y0, y0, y1, y1])
    return abs(a), p


def test_area_in_geographic_crs_is_geodesic() -> None:
    crs = pyproj.CRS.from_epsg(4326)
    transform = Affine(0.001, 0.0, 10.0, 0.0, -0.001, 46.0)
    array = np.zeros((10, 10), dtype=np.uint8)
    array[3:6, 3:6] = 1  # a hole in class 0
    table = polygonize_array(array, transform)
    area, perimeter = measure_m(table.geometry, crs)
    outer_a, outer_p = _geodesic_box(transform, rows=(0, 10), cols=(0, 10))
    hole_a, hole_p = _geodesic_box(transform, rows=(3, 6), cols=(3, 6))
    by_class = dict(zip(table.class_id.tolist(), range(len(table)), strict=True))
    assert area[by_class[0]] == pytest.approx(outer_a - hole_a, rel=1e-9)
    assert perimeter[by_class[0]] == pytest.approx(outer_p + hole_p, rel=1e-9)
    assert area[by_class[1]] == pytest.approx(hole_a, rel=1e-9)
    assert 0.85e6 < outer_a < 0.87e6  # 100 pixels of ~77.5 m x ~111 m at 46°N


def test_source_attribute_is_the_majority_source_and_seam_exact(client, tmp_path: Path) -> None:
    from geoseg.vectorize import SourceRaster

    array = landscape()
    rows, cols = np.indices(array.shape)
    source = ((rows // 53 + cols // 37) % 3).astype(np.uint16)
    source[array == ND] = 65535
    classes_tif = write_tif(tmp_path / "classes.tif", array)
    source_tif = write_tif(tmp_path / "source.tif", source, nodata=65535)
    sources = SourceRaster(source_tif, ("a", "b", "c"))

    def layer(block_px: int, on_cluster=None) -> tuple[np.ndarray, np.ndarray]:
        out = tmp_path / f"p{block_px}-{on_cluster is not None}.gpkg"
        vectorize_raster(
            classes_tif,
            out,
            classes=CLASSES,
            options=VectorizeOptions(block_size_px=block_px, workers=0),
            client=on_cluster,
            sources=sources,
        )
        _, _, wkb, fields = ogr_read(out, layer=LAYER, columns=["source"])
        return shapely.from_wkb(wkb), fields[0]

    whole, whole_source = layer(4096)
    by_shape = dict(zip(shapely.to_wkb(shapely.normalize(whole)), whole_source, strict=True))
    for blocks, block_source in (layer(64), layer(64, client)):  # in process; on 2 workers
        assert sorted(by_shape) == sorted(shapely.to_wkb(shapely.normalize(blocks)))
        assert [by_shape[g] for g in shapely.to_wkb(shapely.normalize(blocks))] == list(
            block_source
        )
    biggest = np.argsort(-shapely.area(whole))[:15]
    for i in biggest:  # the largest regions, each spanning several source cells
        inside = rasterio.features.geometry_mask([whole[i]], array.shape, TRANSFORM, invert=True)
        counts = np.bincount(source[inside & (source < 3)], minlength=3)
        assert whole_source[i] == "abc"[int(np.argmax(counts))]
