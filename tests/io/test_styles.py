"""QGIS styles (geoseg.io.styles): the paletted raster style and the categorized vector style."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

from geoseg.io.styles import raster_qml, vector_qml, write_raster_qml
from tests.support.gpkg import STYLE_CLASSES as CLASSES
from tests.support.gpkg import listing


def test_raster_qml_paletted(tmp_path: Path) -> None:
    path = write_raster_qml(tmp_path / "classes.tif", CLASSES)
    assert path == tmp_path / "classes.qml"
    assert listing(tmp_path) == ["classes.qml"]
    root = ET.parse(path).getroot()
    renderer = root.find("pipe/rasterrenderer")
    assert renderer is not None
    assert renderer.get("type") == "paletted"
    assert renderer.get("band") == "1"
    entries = renderer.findall("colorPalette/paletteEntry")
    assert [(e.get("value"), e.get("color"), e.get("label")) for e in entries] == [
        (str(c.id), c.color.lower(), c.name) for c in CLASSES
    ]
    assert raster_qml(CLASSES) == path.read_text(encoding="utf-8")


def test_vector_qml_escapes_and_orders_by_id() -> None:
    shuffled = (CLASSES[2], CLASSES[0], CLASSES[1])
    root = ET.fromstring(vector_qml(shuffled).split("\n", 1)[1])
    labels = [c.get("label") for c in root.iter("category")]
    assert labels == [c.name for c in CLASSES]
