"""GeoPackage writing (geoseg.io.vector): schema, spatial index, stored style, atomic publish."""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pyogrio
import pytest
import shapely
from pyogrio.raw import read as ogr_read

import geoseg.io.vector as vector_io
from geoseg.errors import ConfigError, OutputError
from geoseg.io.vector import LayerGeometry, write_polygons_gpkg
from tests.support.gpkg import STYLE_CLASSES as CLASSES
from tests.support.gpkg import listing


def _polygons() -> tuple[list[shapely.Polygon], dict[str, np.ndarray]]:
    shell = shapely.box(0, 0, 30, 30)
    hole = shapely.box(10, 10, 20, 20)
    geoms = [shell.difference(hole), hole, shapely.box(30, 0, 40, 10)]
    attributes = {
        "class_id": np.array([0, 1, 2], dtype=np.int32),
        "class_name": np.array(["water", "forest & <scrub>", "urban"], dtype=object),
        "area_m2": np.array([800.0, 100.0, 100.0]),
        "mean_confidence": np.array([50.5, np.nan, 99.0]),
        "pixel_count": np.array([8, 1, 1], dtype=np.int64),
    }
    return geoms, attributes


@pytest.fixture
def written(tmp_path: Path) -> Path:
    geoms, attributes = _polygons()
    return write_polygons_gpkg(
        tmp_path / "polygons.gpkg", geoms, attributes, "EPSG:32633", CLASSES, layer="lc"
    )


def test_layer_schema_crs_and_features(written: Path) -> None:
    info = pyogrio.read_info(written, layer="lc")
    assert info["layer_name"] == "lc"
    assert info["features"] == 3
    assert info["crs"] == "EPSG:32633"
    assert info["geometry_type"] == "Polygon"
    assert info["geometry_name"] == "geom"
    assert list(info["fields"]) == [
        "class_id",
        "class_name",
        "area_m2",
        "mean_confidence",
        "pixel_count",
    ]
    assert info["ogr_types"] == [
        "OFTInteger",
        "OFTString",
        "OFTReal",
        "OFTReal",
        "OFTInteger64",
    ]
    _, _, wkb, fields = ogr_read(written, layer="lc")
    geoms, attributes = _polygons()
    assert shapely.equals(shapely.from_wkb(wkb), np.array(geoms, dtype=object)).all()
    assert np.isnan(fields[3][1])  # NaN is written as NULL and read back as NaN
    assert list(fields[1]) == list(attributes["class_name"])


def test_spatial_index_and_contents(written: Path) -> None:
    with sqlite3.connect(written) as con:
        tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        rtree_rows = con.execute("SELECT count(*) FROM rtree_lc_geom").fetchone()[0]
        registered = dict(con.execute("SELECT table_name, data_type FROM gpkg_contents"))
        extensions = con.execute(
            "SELECT table_name, extension_name FROM gpkg_extensions"
        ).fetchall()
    assert "rtree_lc_geom" in tables
    assert rtree_rows == 3
    assert ("lc", "gpkg_rtree_index") in extensions
    assert registered == {"lc": "features", "layer_styles": "attributes"}


def test_default_style_row(written: Path) -> None:
    with sqlite3.connect(written) as con:
        con.row_factory = sqlite3.Row
        rows = con.execute("SELECT * FROM layer_styles").fetchall()
    assert len(rows) == 1
    row = rows[0]
    assert row["f_table_name"] == "lc"
    assert row["f_geometry_column"] == "geom"
    assert row["f_table_schema"] == ""
    assert row["useAsDefault"] == 1
    assert row["update_time"]
    qml = row["styleQML"]
    for cls in CLASSES:
        r, g, b = cls.rgb
        assert f'label="{_xml_attr(cls.name)}"' in qml
        assert f"{r},{g},{b},255" in qml
    assert qml == (written.with_suffix(".qml")).read_text(encoding="utf-8")


def _xml_attr(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def test_gdal_reads_layer_styles_as_a_table(written: Path) -> None:
    layers = {name: geom for name, geom in pyogrio.list_layers(written)}
    assert layers == {"lc": "Polygon", "layer_styles": None}
    info = pyogrio.read_info(written, layer="layer_styles")
    assert info["features"] == 1
    types = dict(zip(info["fields"], info["ogr_types"], strict=True))
    subtypes = dict(zip(info["fields"], info["ogr_subtypes"], strict=True))
    assert set(types) == {
        "f_table_catalog",
        "f_table_schema",
        "f_table_name",
        "f_geometry_column",
        "styleName",
        "styleQML",
        "styleSLD",
        "useAsDefault",
        "description",
        "owner",
        "ui",
        "update_time",
    }
    assert subtypes["useAsDefault"] == "OFSTBoolean"
    assert types["update_time"] == "OFTDateTime"


@pytest.mark.skipif(shutil.which("ogrinfo") is None, reason="GDAL's ogrinfo CLI not on PATH")
def test_ogrinfo_cli_opens_file_without_warnings(written: Path) -> None:
    out = subprocess.run(
        ["ogrinfo", "-so", str(written), "lc"], capture_output=True, text=True, check=True
    )
    assert "Layer name: lc" in out.stdout
    assert "Feature Count: 3" in out.stdout
    assert "Geometry: Polygon" in out.stdout
    assert 'ID["EPSG",32633]' in out.stdout or "32633" in out.stdout
    assert "class_name: String" in out.stdout
    assert "Warning" not in out.stderr  # e.g. no "GeoPackage version only partially supported"


def test_qml_file_is_qgis_categorized_renderer(written: Path) -> None:
    root = ET.parse(written.with_suffix(".qml")).getroot()
    assert root.tag == "qgis"
    renderer = root.find("renderer-v2")
    assert renderer is not None
    assert renderer.get("type") == "categorizedSymbol"
    assert renderer.get("attr") == "class_id"
    categories = renderer.findall("categories/category")
    assert [(c.get("value"), c.get("label")) for c in categories] == [
        (str(c.id), c.name) for c in CLASSES
    ]
    symbols = {s.get("name"): s for s in renderer.findall("symbols/symbol")}
    for category, cls in zip(categories, CLASSES, strict=True):
        symbol = symbols[category.get("symbol")]
        assert symbol.get("type") == "fill"
        layer = symbol.find("layer")
        assert layer is not None and layer.get("class") == "SimpleFill"
        props = {p.get("k"): p.get("v") for p in layer.findall("prop")}
        options = {o.get("name"): o.get("value") for o in layer.findall("Option/Option")}
        assert props == options
        fill = tuple(int(v) for v in props["color"].split(","))
        outline = tuple(int(v) for v in props["outline_color"].split(","))
        assert fill == (*cls.rgb, 255)
        assert all(o <= f for o, f in zip(outline[:3], fill[:3], strict=True))  # darker
        assert 0 < float(props["outline_width"]) < 0.5


def test_zero_polygons_give_empty_layer_with_schema(tmp_path: Path) -> None:
    attributes = {
        "class_id": np.array([], dtype=np.int32),
        "class_name": np.array([], dtype=object),
        "area_m2": np.array([], dtype=np.float64),
    }
    path = write_polygons_gpkg(tmp_path / "empty.gpkg", [], attributes, "EPSG:4326", CLASSES)
    info = pyogrio.read_info(path, layer="landcover")
    assert info["features"] == 0
    assert info["geometry_type"] == "Polygon"
    assert list(info["fields"]) == ["class_id", "class_name", "area_m2"]
    assert info["crs"] == "EPSG:4326"
    assert pyogrio.read_info(path, layer="layer_styles")["features"] == 1


def test_multipolygons_make_a_multipolygon_layer(tmp_path: Path) -> None:
    multi = shapely.MultiPolygon([shapely.box(0, 0, 1, 1), shapely.box(1, 1, 2, 2)])
    geoms = [multi, shapely.box(5, 5, 6, 6)]
    attributes = {"class_id": np.array([0, 1], dtype=np.int32)}
    path = write_polygons_gpkg(tmp_path / "m.gpkg", geoms, attributes, "EPSG:32633", CLASSES)
    assert pyogrio.read_info(path, layer="landcover")["geometry_type"] == "MultiPolygon"
    read_back = shapely.from_wkb(ogr_read(path, layer="landcover")[2])
    assert list(shapely.get_type_id(read_back)) == [shapely.GeometryType.MULTIPOLYGON] * 2
    assert shapely.equals(read_back, np.array(geoms, dtype=object)).all()

    forced = write_polygons_gpkg(
        tmp_path / "f.gpkg",
        [shapely.box(0, 0, 1, 1)],
        {"class_id": np.array([0], dtype=np.int32)},
        "EPSG:32633",
        CLASSES,
        geometry_type=LayerGeometry.MULTIPOLYGON,
    )
    assert pyogrio.read_info(forced, layer="landcover")["geometry_type"] == "MultiPolygon"


def test_failure_after_temp_file_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A crash after the temp GeoPackage exists: no final file, no leftover temp."""
    seen: list[list[str]] = []

    def broken_style(gpkg: Path, layer: str, qml: str) -> None:
        seen.append(listing(tmp_path))
        raise RuntimeError("disk vanished")

    monkeypatch.setattr(vector_io, "store_default_style", broken_style)
    geoms, attributes = _polygons()
    with pytest.raises(RuntimeError, match="disk vanished"):
        write_polygons_gpkg(tmp_path / "polygons.gpkg", geoms, attributes, "EPSG:32633", CLASSES)
    assert seen == [[f".polygons.partial-{os.getpid()}.gpkg"]]  # temp name beside the final
    assert listing(tmp_path) == []


def test_failure_keeps_previous_output(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A failed rewrite leaves the previous complete file as it was."""
    geoms, attributes = _polygons()
    final = write_polygons_gpkg(
        tmp_path / "polygons.gpkg", geoms, attributes, "EPSG:32633", CLASSES
    )
    before = final.read_bytes()
    real_write = vector_io.ogr_write

    def half_write(path: str, *args: object, **kwargs: object) -> None:
        real_write(path, *args, **kwargs)
        raise OSError("no space left on device")

    monkeypatch.setattr(vector_io, "ogr_write", half_write)
    with pytest.raises(OutputError, match=r"polygons\.gpkg.*no space left"):
        write_polygons_gpkg(final, geoms[:1], {"class_id": np.array([0])}, "EPSG:32633", CLASSES)
    assert final.read_bytes() == before
    assert listing(tmp_path) == ["polygons.gpkg", "polygons.qml"]


def test_bad_arguments_are_refused(tmp_path: Path) -> None:
    geoms, attributes = _polygons()
    with pytest.raises(OutputError, match="does not exist"):
        write_polygons_gpkg(tmp_path / "no" / "p.gpkg", geoms, attributes, "EPSG:4326", CLASSES)
    with pytest.raises(ConfigError, match=r"\.gpkg"):
        write_polygons_gpkg(tmp_path / "p.shp", geoms, attributes, "EPSG:4326", CLASSES)
    with pytest.raises(ConfigError, match="one value per geometry"):
        write_polygons_gpkg(
            tmp_path / "p.gpkg", geoms, {"class_id": np.array([1])}, "EPSG:4326", CLASSES
        )
    with pytest.raises(ConfigError, match="class_id"):
        write_polygons_gpkg(tmp_path / "p.gpkg", geoms, {}, "EPSG:4326", CLASSES)
    with pytest.raises(ConfigError, match="CRS"):
        write_polygons_gpkg(tmp_path / "p.gpkg", geoms, attributes, "EPSG:999999", CLASSES)
    assert listing(tmp_path) == []


def test_writer_appends_batches_into_one_layer(tmp_path: Path) -> None:
    geoms, attributes = _polygons()
    final = tmp_path / "polygons.gpkg"
    with vector_io.PolygonLayerWriter(final, crs="EPSG:32633", layer="lc") as writer:
        writer.write(geoms[:1], {k: v[:1] for k, v in attributes.items()})
        assert not final.exists()  # only the temp file exists while writing
        writer.write([], {k: v[:0] for k, v in attributes.items()})  # nothing to append
        writer.write_wkb(
            shapely.to_wkb(np.array(geoms[1:], dtype=object)),
            {k: v[1:] for k, v in attributes.items()},
        )
        assert writer.n_features == 3
        assert writer.commit(CLASSES) == final
    assert listing(tmp_path) == ["polygons.gpkg", "polygons.qml"]
    _, _, wkb, fields = ogr_read(final, layer="lc")
    assert shapely.equals(shapely.from_wkb(wkb), np.array(geoms, dtype=object)).all()
    assert list(fields[0]) == [0, 1, 2]
    with sqlite3.connect(final) as con:
        assert con.execute("SELECT count(*) FROM rtree_lc_geom").fetchone()[0] == 3
        assert con.execute("SELECT count(*) FROM layer_styles").fetchone()[0] == 1


def test_writer_without_commit_leaves_nothing(tmp_path: Path) -> None:
    geoms, attributes = _polygons()
    with vector_io.PolygonLayerWriter(tmp_path / "p.gpkg", crs="EPSG:32633") as writer:
        writer.write(geoms, attributes)
        with pytest.raises(ConfigError, match="columns"):
            writer.write(geoms[:1], {"class_id": attributes["class_id"][:1]})
    assert listing(tmp_path) == []


def test_writer_refuses_multipolygons_in_a_polygon_layer(tmp_path: Path) -> None:
    multi = shapely.MultiPolygon([shapely.box(0, 0, 1, 1), shapely.box(2, 2, 3, 3)])
    with (
        vector_io.PolygonLayerWriter(tmp_path / "p.gpkg", crs="EPSG:32633") as writer,
        pytest.raises(ConfigError, match="Polygon layer"),
    ):
        writer.write([multi], {"class_id": np.array([0], dtype=np.int32)})
    assert listing(tmp_path) == []
