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

import numpy as np
import rasterio
import rasterio.errors

from geoseg.classes import CLASS_NODATA, ClassInfo, colormap, validate_classes
from geoseg.errors import OutputError
from geoseg.geo.scene import SceneGrid
from geoseg.io.raster import open_scene, unreadable_raster

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


def write_mosaic_vrt(sources: Sequence[Path], dst: Path, classes: Sequence[ClassInfo]) -> Path:
    """A VRT mosaic of single-band class rasters that share one CRS and pixel size.

    Written by hand (no gdalbuildvrt needed). Source paths are stored relative to the VRT. It
    carries the classes like a class raster does, inline: the colour table (entries up to the
    largest class id only: unlike a GeoTIFF's, a VRT palette may be short, and QGIS lists
    every entry in its legend; nodata needs no entry), the class names as GDAL category names
    (QGIS labels the palette with them) and the GEOSEG_CLASSES tag.
    """
    infos = [open_scene(p) for p in sources]
    grids = [i.grid for i in infos]
    crs = grids[0].crs
    rx, ry = abs(grids[0].transform.a), abs(grids[0].transform.e)
    for info, grid in zip(infos[1:], grids[1:], strict=True):
        res = (abs(grid.transform.a), abs(grid.transform.e))
        if grid.crs != crs or not np.allclose(res, (rx, ry)):
            raise OutputError(f"{info.path}: CRS or pixel size differs; cannot join the mosaic")
    left = min(g.bounds[0] for g in grids)
    top = max(g.bounds[3] for g in grids)
    right = max(g.bounds[2] for g in grids)
    bottom = min(g.bounds[1] for g in grids)
    width, height = round((right - left) / rx), round((top - bottom) / ry)
    tags = "".join(
        f'<MDI key="{escape(k)}">{escape(v)}</MDI>' for k, v in classes_tags(classes).items()
    )
    sources_xml = "".join(
        _mosaic_source(info.path, grid, dst, x_off=round((grid.bounds[0] - left) / rx),
                       y_off=round((top - grid.bounds[3]) / ry))
        for info, grid in zip(infos, grids, strict=True)
    )  # fmt: skip
    xml = (
        f'<VRTDataset rasterXSize="{width}" rasterYSize="{height}">\n'
        f"  <SRS>{escape(crs.to_wkt())}</SRS>\n"
        f"  <GeoTransform>{left}, {rx}, 0, {top}, 0, {-ry}</GeoTransform>\n"
        f"  <Metadata>{tags}</Metadata>\n"
        '  <VRTRasterBand dataType="Byte" band="1">\n'
        f"    <NoDataValue>{CLASS_NODATA}</NoDataValue>\n"
        "    <ColorInterp>Palette</ColorInterp>\n"
        f"    <CategoryNames>{category_xml(classes)}</CategoryNames>\n"
        f"    <ColorTable>{_palette_xml(classes)}</ColorTable>\n"
        f"{sources_xml}"
        "  </VRTRasterBand>\n</VRTDataset>\n"
    )
    try:
        dst.write_text(xml, encoding="utf-8")
    except OSError as exc:
        raise OutputError(f"{dst}: cannot write the mosaic ({exc.strerror or exc})") from exc
    return dst


def _palette_xml(classes: Sequence[ClassInfo]) -> str:
    """VRT colour table entries for values 0..max class id (unused values transparent)."""
    colours = colormap(classes)
    return "".join(
        '<Entry c1="{}" c2="{}" c3="{}" c4="{}"/>'.format(*colours.get(i, (0, 0, 0, 0)))
        for i in range(max(c.id for c in classes) + 1)
    )


def _mosaic_source(path: Path, grid: SceneGrid, dst: Path, *, x_off: int, y_off: int) -> str:
    """One source raster of a mosaic VRT, its path relative to the VRT, at its pixel offset."""
    rel = os.path.relpath(path.resolve(), dst.parent.resolve())
    size = f'xSize="{grid.width}" ySize="{grid.height}"'
    return (
        f'    <ComplexSource><SourceFilename relativeToVRT="1">{escape(str(rel))}'
        "</SourceFilename><SourceBand>1</SourceBand>"
        f'<SrcRect xOff="0" yOff="0" {size}/>'
        f'<DstRect xOff="{x_off}" yOff="{y_off}" {size}/>'
        f"<NODATA>{CLASS_NODATA}</NODATA></ComplexSource>\n"
    )
