"""QGIS layer styles (QML) for land-cover classes: the same colours and names everywhere.

`vector_qml` is a categorized renderer on ``class_id`` for the polygon layer (stored in its
GeoPackage and written beside it); `raster_qml` / `write_raster_qml` a paletted renderer for
the class raster.
"""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from pathlib import Path

from geoseg.classes import ClassInfo
from geoseg.errors import OutputError
from geoseg.io.staging import check_output_dir, removed_on_error, temp_path_for

CLASS_FIELD = "class_id"
"""Attribute the categorized style renders on."""

QGIS_VERSION = "3.22.0"
"""QGIS version stamped on our QML (Debian's QGIS); the elements used are read by all QGIS 3."""

_QML_DOCTYPE = "<!DOCTYPE qgis PUBLIC 'http://mrcc.com/qgis.dtd' 'SYSTEM'>"
_OUTLINE_DARKEN = 0.6
_OUTLINE_WIDTH_MM = 0.2


def _darker(rgb: tuple[int, int, int], factor: float = _OUTLINE_DARKEN) -> tuple[int, int, int]:
    r, g, b = (round(c * factor) for c in rgb)
    return r, g, b


def _qgis_color(rgb: tuple[int, int, int], alpha: int = 255) -> str:
    return f"{rgb[0]},{rgb[1]},{rgb[2]},{alpha}"


def _qgis_root() -> ET.Element:
    """The ``<qgis>`` element of a symbology-only style."""
    return ET.Element(
        "qgis",
        {
            "version": QGIS_VERSION,
            "styleCategories": "Symbology",
            "hasScaleBasedVisibilityFlag": "0",
            "minScale": "1e+08",
            "maxScale": "0",
        },
    )


def _qml_document(root: ET.Element) -> str:
    ET.indent(root, space="  ")
    return f"{_QML_DOCTYPE}\n{ET.tostring(root, encoding='unicode')}\n"


def _fill_symbol(name: str, cls: ClassInfo) -> ET.Element:
    """A QGIS simple-fill symbol in the class colour with a thin, darker outline."""
    props = {
        "color": _qgis_color(cls.rgb),
        "style": "solid",
        "outline_color": _qgis_color(_darker(cls.rgb)),
        "outline_style": "solid",
        "outline_width": str(_OUTLINE_WIDTH_MM),
        "outline_width_unit": "MM",
        "joinstyle": "miter",
    }
    symbol = ET.Element(
        "symbol",
        {"type": "fill", "name": name, "alpha": "1", "clip_to_extent": "1", "force_rhr": "0"},
    )
    layer = ET.SubElement(
        symbol, "layer", {"class": "SimpleFill", "enabled": "1", "locked": "0", "pass": "0"}
    )
    # QGIS >= 3.26 reads the Option map, older QGIS 3 reads <prop k v>: write both, as
    # QGIS 3.16-3.26 itself did.
    option_map = ET.SubElement(layer, "Option", {"type": "Map"})
    for key, value in props.items():
        ET.SubElement(option_map, "Option", {"name": key, "type": "QString", "value": value})
    for key, value in props.items():
        ET.SubElement(layer, "prop", {"k": key, "v": value})
    return symbol


def vector_qml(classes: Sequence[ClassInfo], field: str = CLASS_FIELD) -> str:
    """QGIS 3 style: categorized renderer on ``field``, one filled category per class."""
    root = _qgis_root()
    renderer = ET.SubElement(
        root,
        "renderer-v2",
        {
            "type": "categorizedSymbol",
            "attr": field,
            "symbollevels": "0",
            "forceraster": "0",
            "enableorderby": "0",
            "referencescale": "-1",
        },
    )
    categories = ET.SubElement(renderer, "categories")
    symbols = ET.SubElement(renderer, "symbols")
    for index, cls in enumerate(sorted(classes, key=lambda c: c.id)):
        ET.SubElement(
            categories,
            "category",
            {"value": str(cls.id), "label": cls.name, "symbol": str(index), "render": "true"},
        )
        symbols.append(_fill_symbol(str(index), cls))
    ET.SubElement(renderer, "rotation")
    ET.SubElement(renderer, "sizescale")
    ET.SubElement(root, "blendMode").text = "0"
    ET.SubElement(root, "featureBlendMode").text = "0"
    ET.SubElement(root, "layerOpacity").text = "1"
    return _qml_document(root)


def raster_qml(classes: Sequence[ClassInfo], band: int = 1) -> str:
    """QGIS 3 style for a class raster: paletted renderer, class colours and names as labels.

    Nodata (255) has no palette entry, so QGIS draws it transparent.
    """
    root = _qgis_root()
    pipe = ET.SubElement(root, "pipe")
    renderer = ET.SubElement(
        pipe,
        "rasterrenderer",
        {
            "type": "paletted",
            "band": str(band),
            "opacity": "1",
            "alphaBand": "-1",
            "nodataColor": "",
        },
    )
    ET.SubElement(renderer, "rasterTransparency")
    palette = ET.SubElement(renderer, "colorPalette")
    for cls in sorted(classes, key=lambda c: c.id):
        ET.SubElement(
            palette,
            "paletteEntry",
            {"value": str(cls.id), "color": cls.color.lower(), "alpha": "255", "label": cls.name},
        )
    ET.SubElement(pipe, "brightnesscontrast", {"brightness": "0", "contrast": "0", "gamma": "1"})
    ET.SubElement(pipe, "huesaturation", {"saturation": "0", "grayscaleMode": "0"})
    # No zoomed-in/out resampler attributes: QGIS then uses nearest neighbour, right for classes.
    ET.SubElement(pipe, "rasterresampler", {"maxOversampling": "2"})
    ET.SubElement(root, "blendMode").text = "0"
    return _qml_document(root)


def write_raster_qml(
    path: str | os.PathLike[str], classes: Sequence[ClassInfo], band: int = 1
) -> Path:
    """Write the paletted-renderer QML for a class raster (e.g. ``classes.qml``), atomically.

    ``path`` may be the QML itself or the raster (``classes.tif`` -> ``classes.qml``).
    """
    target = Path(path).with_suffix(".qml")
    check_output_dir(target)
    tmp = temp_path_for(target)
    with removed_on_error(tmp):
        try:
            tmp.write_text(raster_qml(classes, band), encoding="utf-8")
            tmp.replace(target)
        except OSError as exc:
            raise OutputError(
                f"{target}: writing the style failed ({exc}); check free disk space and "
                "permissions of the output folder"
            ) from exc
    return target
