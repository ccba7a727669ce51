"""Open a run's class raster and polygons in real QGIS and report how they are styled.

Run by Debian's Python, which has PyQGIS (``python3-qgis``), not by the project's venv::

    QT_QPA_PLATFORM=offscreen /usr/bin/python3 tests/support/qgis_check.py \
        --classes-tif OUT/scene/classes.tif --polygons OUT/scene/polygons.gpkg \
        --expected classes.json --png-dir pngs/

``classes.json`` lists the model package's classes (``[{"id", "name", "color"}]``). Each
layer is opened twice, the way a user opens it (no style applied by hand):

* ``raster``: classes.tif as written (QGIS also reads the ``classes.qml`` beside it);
* ``raster_embedded``: classes.tif with its default .qml ignored, so the paletted renderer can
  only come from the GeoTIFF's colour table and its GDAL category names (``.aux.xml``). An
  8-bit GeoTIFF palette always has 256 entries, so QGIS then also lists the values no class
  uses (black, labelled with the value; 255 transparent): they are reported as
  ``extra_values``, not as a problem;
* ``mosaic`` (with ``--mosaic``): the AOI mosaic class raster (``OUT/mosaic/classes.tif``),
  with its colour table and class names;
* ``vector``: polygons.gpkg as written;
* ``vector_embedded``: a copy of polygons.gpkg alone in a temp folder, so the categorized
  renderer can only come from the GeoPackage's ``layer_styles`` table.

Every load must be valid, the raster ones paletted and the vector ones categorized on
``class_id``, with exactly the expected values, labels and colours. The as-written layers are
rendered to ``classes.png`` and ``polygons.png``. One JSON document goes to stdout (``ok`` and
a list of ``problems``); the exit status is 0 when ``ok``. QGIS may crash while shutting down,
so the script leaves with ``os._exit`` once the result is printed.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import traceback
from pathlib import Path
from typing import Any

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")  # before Qt loads: no display here

from qgis.core import (
    Qgis,
    QgsApplication,
    QgsMapLayer,
    QgsMapRendererParallelJob,
    QgsMapSettings,
    QgsRasterLayer,
    QgsVectorLayer,
)
from qgis.PyQt.QtCore import QSize
from qgis.PyQt.QtGui import QColor

RASTER_RENDERER = "paletted"
VECTOR_RENDERER = "categorizedSymbol"
CLASS_FIELD = "class_id"
LAYER_NAME = "landcover"
BACKGROUND = "#ffffff"


def parse_args(argv: list[str]) -> argparse.Namespace:
    """Command-line options (see the module docstring)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--classes-tif", type=Path, required=True, help="class raster")
    parser.add_argument("--polygons", type=Path, required=True, help="polygons GeoPackage")
    parser.add_argument("--expected", type=Path, required=True, help="classes JSON")
    parser.add_argument("--mosaic", type=Path, help="the AOI mosaic class raster (optional)")
    parser.add_argument("--png-dir", type=Path, required=True, help="folder for the PNGs")
    parser.add_argument("--width-px", type=int, default=800, help="PNG width in px")
    return parser.parse_args(argv)


def expected_classes(path: Path) -> list[dict[str, Any]]:
    """The expected classes as ``{"value", "label", "color"}`` (colour ``#rrggbb``), by id."""
    raw = json.loads(path.read_text(encoding="utf-8"))
    classes = [
        {"value": int(c["id"]), "label": str(c["name"]), "color": str(c["color"]).lower()}
        for c in raw
    ]
    return sorted(classes, key=lambda c: c["value"])


def raster_report(layer: QgsRasterLayer) -> dict[str, Any]:
    """Validity, renderer type and palette of a raster layer."""
    report: dict[str, Any] = {"valid": layer.isValid(), "renderer": None, "classes": []}
    renderer = layer.renderer() if layer.isValid() else None
    if renderer is None:
        return report
    report["renderer"] = renderer.type()
    if renderer.type() == RASTER_RENDERER:
        report["classes"] = [
            {"value": int(c.value), "label": c.label, "color": c.color.name()}
            for c in renderer.classes()
        ]
    return report


def vector_report(layer: QgsVectorLayer) -> dict[str, Any]:
    """Validity, renderer type, attribute, categories and feature count of a vector layer."""
    report: dict[str, Any] = {
        "valid": layer.isValid(),
        "renderer": None,
        "attribute": None,
        "classes": [],
        "features": layer.featureCount() if layer.isValid() else 0,
    }
    renderer = layer.renderer() if layer.isValid() else None
    if renderer is None:
        return report
    report["renderer"] = renderer.type()
    if renderer.type() == VECTOR_RENDERER:
        report["attribute"] = renderer.classAttribute()
        report["classes"] = [
            {"value": int(cat.value()), "label": cat.label(), "color": cat.symbol().color().name()}
            for cat in renderer.categories()
        ]
    return report


def problems_of(
    name: str,
    report: dict[str, Any],
    renderer: str,
    expected: list[dict[str, Any]],
    *,
    allow_extra: bool = False,
) -> list[str]:
    """What differs from a valid layer with ``renderer`` and exactly the expected classes.

    With ``allow_extra``, entries for values that are no class's id are set aside in
    ``report["extra_values"]`` instead (the 256-entry palette of an 8-bit GeoTIFF).
    """
    if not report["valid"]:
        return [f"{name}: the layer is not valid"]
    found: list[str] = []
    if report["renderer"] != renderer:
        found.append(f"{name}: renderer {report['renderer']!r}, expected {renderer!r}")
    if renderer == VECTOR_RENDERER and report["attribute"] != CLASS_FIELD:
        found.append(f"{name}: categorized on {report['attribute']!r}, expected {CLASS_FIELD!r}")
    classes = sorted(report["classes"], key=lambda c: c["value"])
    if allow_extra:
        ids = {c["value"] for c in expected}
        report["extra_values"] = [c["value"] for c in classes if c["value"] not in ids]
        classes = [c for c in classes if c["value"] in ids]
    if classes != expected:
        found.append(f"{name}: classes {classes}, expected {expected}")
    return found


def render_png(layer: QgsMapLayer, path: Path, width_px: int) -> list[str]:
    """Render one layer over a white background to a PNG; return QGIS's render errors."""
    extent = layer.extent()
    height_px = max(1, round(width_px * extent.height() / extent.width()))
    settings = QgsMapSettings()
    settings.setLayers([layer])
    settings.setDestinationCrs(layer.crs())
    settings.setOutputSize(QSize(width_px, height_px))
    settings.setExtent(extent)
    settings.setBackgroundColor(QColor(BACKGROUND))
    job = QgsMapRendererParallelJob(settings)
    job.start()
    job.waitForFinished()
    errors = [f"{e.layerID}: {e.message}" for e in job.errors()]
    if not job.renderedImage().save(str(path), "PNG"):
        errors.append(f"{path}: QImage.save failed")
    return errors


def check(args: argparse.Namespace) -> dict[str, Any]:
    """Load, inspect and render the layers; the JSON result of the script."""
    expected = expected_classes(args.expected)
    args.png_dir.mkdir(parents=True, exist_ok=True)
    result: dict[str, Any] = {"qgis_version": Qgis.QGIS_VERSION, "expected": expected}
    problems: list[str] = []

    raster = QgsRasterLayer(str(args.classes_tif), "classes", "gdal")
    no_qml = QgsRasterLayer.LayerOptions(loadDefaultStyle=False)
    raster_embedded = QgsRasterLayer(str(args.classes_tif), "classes", "gdal", no_qml)
    uri = f"{args.polygons}|layername={LAYER_NAME}"
    vector = QgsVectorLayer(uri, "polygons", "ogr")
    with tempfile.TemporaryDirectory(prefix="geoseg-qgis-") as tmp:
        alone = Path(tmp) / args.polygons.name
        shutil.copyfile(args.polygons, alone)
        vector_embedded = QgsVectorLayer(f"{alone}|layername={LAYER_NAME}", "polygons", "ogr")
        loads = {
            "raster": (raster_report(raster), RASTER_RENDERER),
            "raster_embedded": (raster_report(raster_embedded), RASTER_RENDERER),
            "vector": (vector_report(vector), VECTOR_RENDERER),
            "vector_embedded": (vector_report(vector_embedded), VECTOR_RENDERER),
        }
        del vector_embedded  # release the copy before its folder goes
    if args.mosaic is not None:
        loads["mosaic"] = (
            raster_report(QgsRasterLayer(str(args.mosaic), "mosaic", "gdal")),
            RASTER_RENDERER,
        )
    for name, (report, renderer) in loads.items():
        result[name] = report
        extra = name == "raster_embedded"
        problems += problems_of(name, report, renderer, expected, allow_extra=extra)

    pngs = {"raster": args.png_dir / "classes.png", "vector": args.png_dir / "polygons.png"}
    render_errors: list[str] = []
    for name, layer in (("raster", raster), ("vector", vector)):
        if layer.isValid():
            render_errors += render_png(layer, pngs[name], args.width_px)
    result["pngs"] = {name: str(path) for name, path in pngs.items()}
    result["render_errors"] = render_errors
    problems += render_errors
    result["problems"] = problems
    result["ok"] = not problems
    return result


def main(argv: list[str]) -> int:
    """Run the check inside a QGIS application; print the JSON result; 0 when all is well."""
    args = parse_args(argv)
    QgsApplication.setPrefixPath("/usr", True)
    app = QgsApplication([], False)
    app.initQgis()
    try:
        result = check(args)
    except Exception:
        result = {"ok": False, "problems": [traceback.format_exc()]}
    print(json.dumps(result, indent=2), flush=True)
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    code = main(sys.argv[1:])
    sys.stderr.flush()
    os._exit(code)  # QGIS may crash while tearing down: leave without it
