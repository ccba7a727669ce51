"""GeoPackage writing for land-cover polygons, with the layer's QGIS style stored inside.

A polygon layer is written with pyogrio (raw arrays, WKB geometry, one transaction per batch,
spatial index) under a hidden temp name beside the final one (`geoseg.io.staging`);
`PolygonLayerWriter` appends batches as they are produced, `write_polygons_gpkg` writes one.
On commit the style (`geoseg.io.styles.vector_qml`) becomes the layer's default in the
``layer_styles`` table QGIS reads, a ``.qml`` is written beside it, and both are renamed
onto their final names.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
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
from geoseg.io.staging import check_output_dir, remove_temp_files, temp_path_for
from geoseg.io.styles import CLASS_FIELD, vector_qml


class LayerGeometry(StrEnum):
    """Geometry type of a polygon layer (GDAL names)."""

    POLYGON = "Polygon"
    MULTIPOLYGON = "MultiPolygon"


GEOMETRY_COLUMN = "geom"
"""Name of the geometry column in written GeoPackage layers (GDAL's default)."""

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
        check_output_dir(final)
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
            remove_temp_files(self._tmp_gpkg, self._tmp_qml)

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
