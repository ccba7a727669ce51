"""Reference labels: a raster on the image grid or polygons, mapped to class indices per tile.

A `LabelConfig` says how label values become classes (value map, nodata values, the class
column of polygons), so nothing about a data set is hard-coded; `open_labels` returns a reader
that gives class indices, with `IGNORE` where there is no label, for any pixel window.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pyogrio
import pyogrio.errors
import rasterio
import shapely
from pyproj import Transformer
from rasterio.crs import CRS
from rasterio.errors import RasterioIOError
from rasterio.features import rasterize

from geoseg.classes import CLASS_NODATA, ClassInfo
from geoseg.errors import ConfigError, TrainingDataError
from geoseg.geo.window import PixelWindow
from geoseg.io.raster import SceneInfo

IGNORE = CLASS_NODATA
"""Class index of pixels without a label (nodata, unlabelled, or held out)."""


POLYGON_SUFFIXES = frozenset({".gpkg", ".geojson", ".json", ".shp", ".fgb", ".gml", ".kml"})
"""Label files with these suffixes are read as polygons; anything else as a raster."""


@dataclass(frozen=True)
class LabelConfig:
    """How label values become classes.

    ``value_map`` maps a label value (raster value, or the polygon class column's value) to a
    class id; by default every class id maps to itself. ``nodata`` values carry no label.
    Polygon class columns may also hold class names.
    """

    classes: tuple[ClassInfo, ...]
    value_map: Mapping[int, int] = field(default_factory=dict)
    nodata: frozenset[int] = frozenset({CLASS_NODATA})
    class_column: str = "class"

    def __post_init__(self) -> None:
        ids = {c.id for c in self.classes}
        bad = sorted({v for v in self.value_map.values() if v not in ids})
        if bad:
            raise ConfigError(
                f"label_map points to class ids {bad} that are not in the class list "
                f"{sorted(ids)}; fix label_map or add those classes"
            )

    @property
    def values_to_index(self) -> dict[int, int]:
        """Label value -> class index (position in the class list)."""
        index = {c.id: i for i, c in enumerate(self.classes)}
        mapping = self.value_map or {c.id: c.id for c in self.classes}
        return {int(v): index[cid] for v, cid in mapping.items() if int(v) not in self.nodata}

    def to_json(self) -> dict[str, Any]:
        """The parts stored in a model package, so `geoseg evaluate` reads labels the same way."""
        return {
            "label_map": {str(k): v for k, v in self.value_map.items()},
            "label_nodata": sorted(self.nodata),
            "class_column": self.class_column,
        }


class LabelReader(Protocol):
    """Class-index tiles (``IGNORE`` where unlabelled) from a label raster or polygons."""

    path: Path

    def read(self, window: PixelWindow) -> np.ndarray: ...

    def close(self) -> None: ...


class RasterLabels:
    """A label raster on the image grid, mapped to class indices through a lookup table."""

    def __init__(self, path: Path, config: LabelConfig, image: SceneInfo):
        self.path = path
        try:
            self._ds = rasterio.open(path)
        except RasterioIOError as exc:
            raise TrainingDataError(
                f"{path}: cannot read the label raster ({str(exc).split(':')[-1].strip()}); "
                "pass a GeoTIFF on the image grid or polygons (.gpkg/.geojson)"
            ) from None
        ds, grid = self._ds, image.grid
        if (ds.crs, ds.transform, (ds.height, ds.width)) != (
            image.grid.crs,
            image.grid.transform,
            image.grid.shape,
        ):
            ds.close()
            raise TrainingDataError(
                f"{path}: the label grid ({ds.crs}, {ds.width}x{ds.height} px, origin "
                f"{ds.transform.c:g},{ds.transform.f:g}, pixel {ds.transform.a:g} m) differs from "
                f"the image {image.path} ({grid.crs}, {grid.width}x{grid.height} px, origin "
                f"{grid.transform.c:g},{grid.transform.f:g}, pixel {grid.transform.a:g} m); "
                "resample the labels onto the image grid (gdalwarp -r near -te ... -tr ...)"
            )
        mapping = config.values_to_index
        self._known = sorted(mapping)
        self._classes = config.classes
        self._nodata = set(config.nodata)
        if ds.nodata is not None and float(ds.nodata).is_integer():
            self._nodata.add(int(ds.nodata))
        self._lut: np.ndarray | None = None
        dtype = np.dtype(ds.dtypes[0])
        if dtype.kind == "u" and dtype.itemsize <= 2:
            lut = np.full(2 ** (8 * dtype.itemsize), -1, dtype=np.int16)
            for v in self._nodata:
                if 0 <= v < lut.size:
                    lut[v] = IGNORE
            for v, i in mapping.items():
                if 0 <= v < lut.size:
                    lut[v] = i
            self._lut = lut
        self._keys = np.array(sorted(mapping), dtype=np.float64)
        self._values = np.array([mapping[k] for k in sorted(mapping)], dtype=np.int16)

    def read(self, window: PixelWindow) -> np.ndarray:
        raw = self._ds.read(1, window=window.to_rasterio())
        out = self._lut[raw] if self._lut is not None else self._map_generic(raw)
        if (out < 0).any():
            unknown = sorted({v.item() for v in np.unique(raw[out < 0])})[:10]
            names = ", ".join(f"{c.id} {c.name}" for c in self._classes)
            raise TrainingDataError(
                f"{self.path}: label values {unknown} are not in the class list ({names}) "
                f"and not nodata {sorted(self._nodata)}; add them to the classes or label_map "
                "of the training config, or list them in label_nodata"
            )
        return out.astype(np.uint8)

    def _map_generic(self, raw: np.ndarray) -> np.ndarray:
        flat = raw.astype(np.float64)
        out = np.full(raw.shape, -1, dtype=np.int16)
        is_nodata = np.isin(flat, list(self._nodata)) | np.isnan(flat)
        out[is_nodata] = IGNORE
        if self._keys.size:
            idx = np.clip(np.searchsorted(self._keys, flat), 0, self._keys.size - 1)
            found = (self._keys[idx] == flat) & ~is_nodata
            out[found] = self._values[idx[found]]
        return out

    def close(self) -> None:
        self._ds.close()


class PolygonLabels:
    """Label polygons rasterized per tile onto the image grid (later features win overlaps)."""

    def __init__(self, path: Path, config: LabelConfig, image: SceneInfo):
        self.path = path
        self._transform = image.grid.transform
        column = config.class_column
        try:
            info = pyogrio.read_info(path)
            fields = [str(f) for f in info["fields"]]
            if column not in fields:
                raise TrainingDataError(
                    f"{path}: has no class column {column!r} "
                    f"(columns: {', '.join(fields) or 'none'}); "
                    "set class_column in the training config (--class-column)"
                )
            meta, _, wkb, values = pyogrio.raw.read(path, columns=[column], read_geometry=True)
        except (pyogrio.errors.DataSourceError, pyogrio.errors.DataLayerError, OSError) as exc:
            raise TrainingDataError(
                f"{path}: cannot read the label polygons ({str(exc).splitlines()[0]}); "
                "pass a GeoPackage/GeoJSON with polygons and a class column"
            ) from None
        if not meta.get("crs"):
            raise TrainingDataError(f"{path}: the label polygons have no CRS; save them with one")
        geoms = shapely.from_wkb(wkb)
        crs = CRS.from_user_input(meta["crs"])
        if crs != image.grid.crs:
            transformer = Transformer.from_crs(
                crs.to_wkt(), image.grid.crs.to_wkt(), always_xy=True
            )
            geoms = shapely.transform(
                geoms, lambda xy: np.column_stack(transformer.transform(*xy.T))
            )
        classes = _polygon_classes(path, values[0], config)
        keep = np.array([g is not None and not g.is_empty for g in geoms]) & (classes >= 0)
        self._geoms = geoms[keep]
        self._classes = classes[keep].astype(np.uint8)
        if not len(self._geoms):
            raise TrainingDataError(f"{path}: no labelled polygon to train on")
        footprint = shapely.box(*image.grid.bounds)
        if not shapely.intersects(self._geoms, footprint).any():
            raise TrainingDataError(
                f"{path}: no label polygon overlaps the image {image.path} (after reprojecting "
                f"to {image.grid.crs.to_string()}); check the files belong together"
            )
        self._tree = shapely.STRtree(self._geoms)

    def read(self, window: PixelWindow) -> np.ndarray:
        transform = self._transform @ rasterio.Affine.translation(window.col_off, window.row_off)
        x0, y0 = transform @ (0, 0)
        x1, y1 = transform @ (window.width, window.height)
        hits = np.sort(self._tree.query(shapely.box(x0, y1, x1, y0)))
        if hits.size == 0:
            return np.full(window.shape, IGNORE, dtype=np.uint8)
        shapes = zip(self._geoms[hits], self._classes[hits].tolist(), strict=True)
        return rasterize(
            shapes, out_shape=window.shape, transform=transform, fill=IGNORE, dtype="uint8"
        )

    def object_map(self, window: PixelWindow, index: int) -> np.ndarray:
        """int32 map of the features of class ``index`` over ``window``: feature k (1-based,
        in layer order among that class) where it lies, 0 elsewhere; later features win."""
        transform = self._transform @ rasterio.Affine.translation(window.col_off, window.row_off)
        ids = np.flatnonzero(self._classes == index)
        if ids.size == 0:
            return np.zeros(window.shape, dtype=np.int32)
        shapes = zip(self._geoms[ids], range(1, ids.size + 1), strict=True)
        return rasterize(shapes, out_shape=window.shape, transform=transform, fill=0, dtype="int32")

    def close(self) -> None:
        pass


def _polygon_classes(path: Path, values: np.ndarray, config: LabelConfig) -> np.ndarray:
    """Class index per feature (-1: nodata); class names or mapped values are accepted."""
    to_index = config.values_to_index
    by_name = {c.name.casefold(): i for i, c in enumerate(config.classes)}
    out = np.full(len(values), -1, dtype=np.int64)
    unknown: set[str] = set()
    for i, v in enumerate(values):
        if v is None:
            continue
        text = str(v).strip()
        number = _as_int(v)
        if number is not None:
            if number in config.nodata:
                continue
            if number in to_index:
                out[i] = to_index[number]
                continue
        elif text.casefold() in by_name:
            out[i] = by_name[text.casefold()]
            continue
        unknown.add(text)
    if unknown:
        names = ", ".join(f"{c.id} {c.name}" for c in config.classes)
        raise TrainingDataError(
            f"{path}: class values {sorted(unknown)[:10]} in column {config.class_column!r} are "
            f"not in the class list ({names}); add them to the classes or label_map, or list "
            "them in label_nodata"
        )
    return out


def _as_int(value: object) -> int | None:
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return int(number) if number.is_integer() else None


def open_labels(path: Path, config: LabelConfig, image: SceneInfo) -> LabelReader:
    """A label reader for ``path``: polygons by file suffix, otherwise a raster."""
    if not Path(path).exists():
        raise TrainingDataError(f"{path}: label file not found; check --labels")
    if Path(path).suffix.lower() in POLYGON_SUFFIXES:
        return PolygonLabels(Path(path), config, image)
    return RasterLabels(Path(path), config, image)


def read_class_list(source: Path | Sequence[Mapping[str, Any]]) -> tuple[ClassInfo, ...]:
    """Classes from a JSON/YAML file or inline list of ``{id, name, color}``.

    A mapping ``{"1": "Water", ...}`` (id -> name) is accepted too; colours then come from a
    fixed palette.
    """
    import yaml

    from geoseg.classes import validate_classes

    where = str(source) if isinstance(source, Path) else "classes"
    raw: Any = source
    try:
        if isinstance(source, Path):
            raw = yaml.safe_load(source.read_text(encoding="utf-8"))
        if isinstance(raw, Mapping):
            items = [
                {"id": int(k), **(v if isinstance(v, Mapping) else {"name": str(v)})}
                for k, v in raw.items()
            ]
        else:
            items = list(raw)
        classes = [
            ClassInfo(
                int(c["id"]), str(c["name"]), str(c.get("color") or _PALETTE[k % len(_PALETTE)])
            )
            for k, c in enumerate(items)
        ]
    except (OSError, ValueError, KeyError, TypeError, yaml.YAMLError) as exc:
        raise ConfigError(
            f"{where}: cannot read the class list ({exc}); write a list like "
            '[{"id": 1, "name": "water", "color": "#1f78b4"}]'
        ) from None
    return validate_classes(classes)


_PALETTE = (
    "#1f78b4",
    "#e31a1c",
    "#b2b2b2",
    "#33a02c",
    "#c8a050",
    "#b2df8a",
    "#ff7f00",
    "#a6cee3",
    "#6a3d9a",
    "#fb9a99",
    "#fdbf6f",
    "#cab2d6",
)
