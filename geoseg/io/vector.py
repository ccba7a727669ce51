"""GeoPackage writing and QGIS layer styles for land-cover polygons.

A polygon layer is written with pyogrio (raw arrays, WKB geometry, one transaction per batch,
spatial index) to a hidden temp name beside the final one; `PolygonLayerWriter` appends
batches as they are produced, `write_polygons_gpkg` writes one. Its QGIS style -- a
categorized renderer on ``class_id`` with each class's name and colour -- is stored as the
layer's default style in the GeoPackage ``layer_styles`` table (the table QGIS itself reads
and writes) and as a ``.qml`` beside the file. Only a complete file is renamed onto the final
name, so a crash never leaves a half-written GeoPackage where a user would open it.

The class raster gets a paletted-renderer ``.qml`` (`write_raster_qml`) so QGIS shows the same
colours and labels for raster and polygons.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import xml.etree.ElementTree as ET
from collections.abc import Iterator, Mapping, Sequence
from enum import StrEnum
from pathlib import Path
from typing import Any

import numpy as np
import pyogrio.errors
import shapely
from pyogrio.raw import write as ogr_write

from geoseg.classes import ClassInfo
from geoseg.errors import ConfigError, OutputError


class LayerGeometry(StrEnum):
    """Geometry type of a polygon layer (GDAL names)."""

    POLYGON = "Polygon"
    MULTIPOLYGON = "MultiPolygon"


GEOMETRY_COLUMN = "geom"
"""Name of the geometry column in written GeoPackage layers (GDAL's default)."""

CLASS_FIELD = "class_id"
"""Attribute the categorized style renders on."""

QGIS_VERSION = "3.22.0"
"""QGIS version stamped on our QML (Debian's QGIS); the elements used are read by all QGIS 3."""

_QML_DOCTYPE = "<!DOCTYPE qgis PUBLIC 'http://mrcc.com/qgis.dtd' 'SYSTEM'>"
_OUTLINE_DARKEN = 0.6
_OUTLINE_WIDTH_MM = 0.2

_PYOGRIO_WRITE_ERRORS = (
    pyogrio.errors.DataSourceError,
    pyogrio.errors.DataLayerError,
    pyogrio.errors.FeatureError,
    pyogrio.errors.FieldError,
    pyogrio.errors.GeometryError,
)

_LAYER_STYLES_DDL = """
CREATE TABLE IF NOT EXISTS layer_styles (
    id INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL,
    f_table_catalog TEXT(256),
    f_table_schema TEXT(256),
    f_table_name TEXT(256),
    f_geometry_column TEXT(256),
    styleName TEXT(30),
    styleQML TEXT,
    styleSLD TEXT,
    useAsDefault BOOLEAN,
    description TEXT,
    owner TEXT(30),
    ui TEXT(30),
    update_time DATETIME DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
)
"""


# --------------------------------------------------------------------------- temp files


def temp_path_for(final: Path, suffix: str | None = None) -> Path:
    """Hidden temp name beside ``final``: ``.<stem>.partial-<pid><suffix>``.

    The suffix is kept last (default: the final one) because GDAL warns about a GeoPackage
    whose name does not end in ``.gpkg``.
    """
    suffix = final.suffix if suffix is None else suffix
    return final.with_name(f".{final.stem}.partial-{os.getpid()}{suffix}")


def _remove_temp_files(*paths: Path) -> None:
    """Remove temp files and the SQLite side files a crash may leave beside them."""
    for p in paths:
        for leftover in (p, p.with_name(p.name + "-journal"), p.with_name(p.name + "-wal")):
            with contextlib.suppress(FileNotFoundError):
                leftover.unlink()


@contextlib.contextmanager
def _temp_files(*paths: Path) -> Iterator[None]:
    """Remove the given temp files if the block raises (renamed ones are simply gone)."""
    try:
        yield
    except BaseException:
        _remove_temp_files(*paths)
        raise


def _check_output_dir(path: Path) -> None:
    if not path.parent.is_dir():
        raise OutputError(
            f"{path}: the folder {path.parent} does not exist; create it or choose another "
            "output folder"
        )
    if not os.access(path.parent, os.W_OK):
        raise OutputError(
            f"{path}: the folder {path.parent} is not writable; fix its permissions or choose "
            "another output folder"
        )


# --------------------------------------------------------------------------- GeoPackage


def write_polygons_gpkg(
    path: str | os.PathLike[str],
    geometries: Sequence[shapely.Geometry] | np.ndarray,
    attributes: Mapping[str, np.ndarray],
    crs: str,
    classes: Sequence[ClassInfo],
    *,
    layer: str = "landcover",
    geometry_type: LayerGeometry | None = None,
) -> Path:
    """Write polygons + attribute columns as a styled GeoPackage layer; return the final path.

    ``attributes`` maps column names to arrays as long as ``geometries`` (NaN floats become
    NULL); it must contain ``class_id`` for the style. ``crs`` is WKT or ``"EPSG:<code>"``.
    ``geometry_type`` fixes the layer type; by default it is ``Polygon`` when every geometry is
    a Polygon (what polygonizing 4-connected regions gives), otherwise ``MultiPolygon``. For a
    MultiPolygon layer every Polygon is promoted, so one layer never mixes the two. The layer's
    default QGIS style is stored in the file and written beside it as ``<stem>.qml``. Both are
    written under temp names and renamed only when complete; on any error the temp files are
    removed and nothing appears under the final names. One batch of `PolygonLayerWriter`.
    """
    geoms = np.asarray(geometries, dtype=object).reshape(-1)
    geometry_type = LayerGeometry(geometry_type or _layer_geometry_type(geoms))
    with PolygonLayerWriter(path, crs=crs, layer=layer, geometry_type=geometry_type) as writer:
        writer.write(geoms, attributes)
        return writer.commit(classes)


class PolygonLayerWriter:
    """Append polygon batches to one GeoPackage layer; publish the file only when complete.

    Usage::

        with PolygonLayerWriter(path, crs=wkt, geometry_type=LayerGeometry.POLYGON) as w:
            w.write(geometries, {"class_id": ..., ...})   # as many batches as needed
            w.commit(classes)                              # style, .qml, rename

    Each batch is one pyogrio write (one transaction) into a hidden temp GeoPackage beside the
    final name; the first creates the layer with a spatial index (kept up to date by GDAL as
    later batches are appended), so batches can be streamed while they are produced and never
    have to be held together in memory. Every batch must have the same columns. `commit`
    stores the QGIS style, writes ``<stem>.qml`` and renames both onto their final names; leaving
    the ``with`` block without committing (or with an exception) removes the temp files, so a
    failed run leaves no half file and keeps an older complete output as it was.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        crs: str,
        geometry_type: LayerGeometry = LayerGeometry.POLYGON,
        layer: str = "landcover",
    ) -> None:
        final = Path(path)
        if final.suffix.lower() != ".gpkg":
            raise ConfigError(f"{final}: polygons are written as GeoPackage; use a .gpkg file name")
        _check_output_dir(final)
        self.path = final
        self.crs = crs
        self.layer = layer
        self.geometry_type = LayerGeometry(geometry_type)
        self.n_features = 0
        self._fields: list[str] | None = None
        self._tmp_gpkg = temp_path_for(final, ".gpkg")
        self._tmp_qml = temp_path_for(final.with_suffix(".qml"))
        self._committed = False

    def __enter__(self) -> PolygonLayerWriter:
        self._tmp_gpkg.unlink(missing_ok=True)  # a leftover of a killed run with the same pid
        return self

    def __exit__(self, *exc: object) -> None:
        if not self._committed:
            _remove_temp_files(self._tmp_gpkg, self._tmp_qml)

    def write(
        self, geometries: Sequence[shapely.Geometry] | np.ndarray, attributes: Mapping[str, Any]
    ) -> None:
        """Append shapely (Multi)Polygons with their attribute columns."""
        geoms = np.asarray(geometries, dtype=object).reshape(-1)
        if self.geometry_type == LayerGeometry.MULTIPOLYGON:
            geoms = as_multipolygons(geoms)
        elif len(geoms) and not np.all(shapely.get_type_id(geoms) == shapely.GeometryType.POLYGON):
            raise ConfigError(f"{self.path}: a Polygon layer cannot hold MultiPolygons")
        wkb = shapely.to_wkb(geoms) if len(geoms) else np.empty(0, dtype=object)
        self.write_wkb(wkb, attributes)

    def write_wkb(self, wkb: np.ndarray, attributes: Mapping[str, Any]) -> None:
        """Append geometries already encoded as WKB, of the layer's geometry type."""
        columns = {name: np.asarray(values) for name, values in attributes.items()}
        _validate_columns(self.path, len(wkb), columns)
        if self._fields is not None and list(columns) != self._fields:
            raise ConfigError(
                f"{self.path}: batch columns {list(columns)} differ from the layer's {self._fields}"
            )
        if self._fields is not None and not len(wkb):
            return
        first = self._fields is None
        creation: dict[str, Any] = {}
        if first:
            creation = {
                # GPKG 1.2: opened without warnings by older GDAL/QGIS (GDAL < 3.7 warns on 1.4).
                "dataset_options": {"VERSION": "1.2"},
                "layer_options": {"SPATIAL_INDEX": "YES", "GEOMETRY_NAME": GEOMETRY_COLUMN},
            }
        with self._errors_as_geoseg():
            ogr_write(
                str(self._tmp_gpkg),
                wkb,
                list(columns.values()),
                list(columns),
                layer=self.layer,
                driver="GPKG",
                geometry_type=str(self.geometry_type),
                crs=self.crs,
                encoding="UTF-8",
                append=not first,
                **creation,
            )
        self._fields = list(columns)
        self.n_features += len(wkb)

    def commit(self, classes: Sequence[ClassInfo]) -> Path:
        """Store the style, write the .qml and move both onto their final names."""
        if self._fields is None:
            raise ConfigError(f"{self.path}: nothing was written; write at least one batch")
        qml = vector_qml(classes)
        with self._errors_as_geoseg():
            store_default_style(self._tmp_gpkg, self.layer, qml)
            self._tmp_qml.write_text(qml, encoding="utf-8")
            self._tmp_qml.replace(self.path.with_suffix(".qml"))
            self._tmp_gpkg.replace(self.path)
        self._committed = True
        return self.path

    @contextlib.contextmanager
    def _errors_as_geoseg(self) -> Iterator[None]:
        try:
            yield
        except pyogrio.errors.CRSError as exc:
            raise ConfigError(
                f"{self.path}: the CRS {self.crs[:80]!r} is not understood by GDAL ({exc}); "
                "give WKT or 'EPSG:<code>'"
            ) from exc
        except (OSError, sqlite3.Error, *_PYOGRIO_WRITE_ERRORS) as exc:
            raise OutputError(
                f"{self.path}: writing the GeoPackage failed ({exc}); check free disk space and "
                "permissions of the output folder, then run again"
            ) from exc


def _validate_columns(path: Path, n: int, columns: Mapping[str, np.ndarray]) -> None:
    if CLASS_FIELD not in columns:
        raise ConfigError(f"{path}: attributes need a {CLASS_FIELD!r} column for the layer style")
    for name, values in columns.items():
        if values.ndim != 1 or len(values) != n:
            raise ConfigError(
                f"{path}: attribute {name!r} has shape {values.shape}, expected ({n},) "
                "(one value per geometry)"
            )


def _layer_geometry_type(geoms: np.ndarray) -> LayerGeometry:
    """``Polygon`` if all geometries are Polygons (or there are none), else ``MultiPolygon``."""
    if not len(geoms):
        return LayerGeometry.POLYGON
    type_ids = shapely.get_type_id(geoms)
    allowed = {shapely.GeometryType.POLYGON, shapely.GeometryType.MULTIPOLYGON}
    if not set(np.unique(type_ids).tolist()) <= {int(t) for t in allowed}:
        raise ConfigError("polygon layers take only Polygon or MultiPolygon geometries")
    if np.all(type_ids == shapely.GeometryType.POLYGON):
        return LayerGeometry.POLYGON
    return LayerGeometry.MULTIPOLYGON


def as_multipolygons(geoms: np.ndarray) -> np.ndarray:
    """Each Polygon as a one-part MultiPolygon (vectorized); MultiPolygons unchanged."""
    geoms = np.asarray(geoms, dtype=object)
    out = geoms.copy()
    single = np.flatnonzero(shapely.get_type_id(geoms) == shapely.GeometryType.POLYGON)
    if single.size:
        out[single] = shapely.multipolygons(geoms[single], indices=np.arange(single.size))
    return out


def store_default_style(gpkg: str | os.PathLike[str], layer: str, qml: str) -> None:
    """Store ``qml`` as the default QGIS style of ``layer`` in the GeoPackage's layer_styles.

    Creates the table with QGIS's schema if missing and registers it in ``gpkg_contents`` as
    an attributes table, as GDAL does when QGIS saves a style. A previous default style of the
    same layer stops being the default.
    """
    con = sqlite3.connect(os.fspath(gpkg))
    try:
        with con:
            exists = con.execute(
                "SELECT 1 FROM sqlite_master WHERE type='table' AND name='layer_styles'"
            ).fetchone()
            if not exists:
                con.execute(_LAYER_STYLES_DDL)
                con.execute(
                    "INSERT INTO gpkg_contents (table_name, data_type, identifier, description,"
                    " last_change) VALUES ('layer_styles', 'attributes', 'layer_styles', '',"
                    " strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))"
                )
            con.execute("UPDATE layer_styles SET useAsDefault = 0 WHERE f_table_name = ?", (layer,))
            con.execute(
                "INSERT INTO layer_styles (f_table_catalog, f_table_schema, f_table_name,"
                " f_geometry_column, styleName, styleQML, styleSLD, useAsDefault, description,"
                " owner) VALUES ('', '', ?, ?, ?, ?, '', 1, ?, '')",
                (layer, GEOMETRY_COLUMN, layer, qml, "geoseg land-cover classes"),
            )
    finally:
        con.close()


# --------------------------------------------------------------------------- QML


def _darker(rgb: tuple[int, int, int], factor: float = _OUTLINE_DARKEN) -> tuple[int, int, int]:
    r, g, b = (round(c * factor) for c in rgb)
    return r, g, b


def _qgis_color(rgb: tuple[int, int, int], alpha: int = 255) -> str:
    return f"{rgb[0]},{rgb[1]},{rgb[2]},{alpha}"


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
    root = ET.Element(
        "qgis",
        {
            "version": QGIS_VERSION,
            "styleCategories": "Symbology",
            "hasScaleBasedVisibilityFlag": "0",
            "minScale": "1e+08",
            "maxScale": "0",
        },
    )
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
    root = ET.Element(
        "qgis",
        {
            "version": QGIS_VERSION,
            "styleCategories": "Symbology",
            "hasScaleBasedVisibilityFlag": "0",
            "minScale": "1e+08",
            "maxScale": "0",
        },
    )
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
    _check_output_dir(target)
    tmp = temp_path_for(target)
    with _temp_files(tmp):
        try:
            tmp.write_text(raster_qml(classes, band), encoding="utf-8")
            tmp.replace(target)
        except OSError as exc:
            raise OutputError(
                f"{target}: writing the style failed ({exc}); check free disk space and "
                "permissions of the output folder"
            ) from exc
    return target
