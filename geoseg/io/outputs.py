"""What geoseg writes, by name: output file names and the class metadata of class rasters.

A class raster carries its classes three ways, all written and read here: the GEOSEG_CLASSES
tag (names and colours, for geoseg itself), the colour table (written with the raster) and
GDAL category names in a PAM sidecar ``<tif>.aux.xml`` (what QGIS labels the palette with).
`classes_for_raster` reads them back in that order of trust.
"""

from __future__ import annotations

import json
import os
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from pathlib import Path
from xml.sax.saxutils import escape

import rasterio
import rasterio.errors

from geoseg.classes import CLASS_NODATA, ClassInfo, validate_classes
from geoseg.io.raster import unreadable_raster, write_cog
from geoseg.io.styles import write_raster_qml

CLASSES_NAME = "classes.tif"
CONFIDENCE_NAME = "confidence.tif"
POLYGONS_NAME = "polygons.gpkg"
PREVIEW_NAME = "preview.png"
RUN_JSON = "run.json"


def classes_tags(classes: Sequence[ClassInfo]) -> dict[str, str]:
    """GeoTIFF metadata tags that let `geoseg vectorize` recover class names and colours."""
    return {
        "GEOSEG_CLASSES": json.dumps(
            [{"id": c.id, "name": c.name, "color": c.color} for c in classes]
        )
    }


def classes_from_tags(path: Path) -> list[ClassInfo] | None:
    """Classes stored by `classes_tags` in a class raster, or None if it has none."""
    with rasterio.open(path) as ds:
        raw = ds.tags().get("GEOSEG_CLASSES")
    if raw is None:
        return None
    return [ClassInfo(int(c["id"]), str(c["name"]), str(c["color"])) for c in json.loads(raw)]


def write_category_names(tif: Path, classes: Sequence[ClassInfo]) -> Path:
    """Class names as GDAL category names in a PAM sidecar (``<tif>.aux.xml``).

    GeoTIFF has no slot for category names; GDAL and QGIS read them from this sidecar, which
    travels with the file like a .prj would.
    """
    xml = (
        '<PAMDataset>\n  <PAMRasterBand band="1">\n'
        f"    <CategoryNames>{category_xml(classes)}</CategoryNames>\n"
        "  </PAMRasterBand>\n</PAMDataset>\n"
    )
    sidecar = tif.with_name(tif.name + ".aux.xml")
    sidecar.write_text(xml, encoding="utf-8")
    return sidecar


def write_class_cogs(raw: tuple[Path, Path], folder: Path, classes: Sequence[ClassInfo]) -> None:
    """``classes.tif`` (mode overviews) and ``confidence.tif`` (average overviews) as COGs in
    ``folder`` from a raw class and confidence raster, with the class names and
    ``classes.qml``; the raw files are left in place."""
    write_cog(raw[0], folder / CLASSES_NAME, resampling="mode")
    write_cog(raw[1], folder / CONFIDENCE_NAME, resampling="average")
    write_category_names(folder / CLASSES_NAME, classes)
    write_raster_qml(folder / "classes.qml", classes)


def classes_for_raster(path: str | os.PathLike[str]) -> tuple[ClassInfo, ...]:
    """Class names and colours stored with a class raster, for vectorizing it alone.

    In order: the GEOSEG_CLASSES tag geoseg writes; else the colour table, with names from
    GDAL category names (``<file>.aux.xml``) or ``class <id>`` (entries still at GDAL's
    default opaque black are skipped: they are unused slots); else nothing (every value found
    is then named ``class <id>``).
    """
    path = Path(path)
    try:
        tagged = classes_from_tags(path)
        if tagged:
            return validate_classes(tagged)
        with rasterio.open(path) as src:
            try:
                table = src.colormap(1)
            except ValueError:
                return ()
    except rasterio.errors.RasterioError as exc:
        raise unreadable_raster(path, exc) from exc
    names = read_category_names(path)
    found = []
    for value, rgba in sorted(table.items()):
        if value >= CLASS_NODATA or rgba[3] == 0:
            continue
        name = names.get(value, "")
        if not name and tuple(rgba) == (0, 0, 0, 255):
            continue
        color = "#{:02x}{:02x}{:02x}".format(*rgba[:3])
        found.append(ClassInfo(int(value), name or f"class {value}", color))
    return tuple(found)


def read_category_names(path: Path) -> dict[int, str]:
    """GDAL category names of band 1 from the PAM sidecar, if there is one."""
    sidecar = path.with_name(path.name + ".aux.xml")
    try:
        root = ET.parse(sidecar).getroot()
    except (OSError, ET.ParseError):
        return {}
    for band in root.iter("PAMRasterBand"):
        if band.get("band", "1") == "1":
            names = band.find("CategoryNames")
            if names is not None:
                return {i: (c.text or "") for i, c in enumerate(names.findall("Category"))}
    return {}


def raster_scene_name(path: str | os.PathLike[str]) -> str:
    """Scene id of a class raster: its folder for geoseg's ``<scene>/classes.tif``, else stem."""
    path = Path(path)
    return path.parent.resolve().name if path.stem == "classes" else path.stem


def category_xml(classes: Sequence[ClassInfo]) -> str:
    """``<Category>`` entries for values 0..max class id: the name, or empty for unused values."""
    names = {c.id: c.name for c in classes}
    return "".join(
        f"<Category>{escape(names.get(i, ''))}</Category>" for i in range(max(names) + 1)
    )
