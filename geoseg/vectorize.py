"""Class raster -> land-cover polygons with per-region attributes.

One feature per connected region of equal class value; nodata is never vectorized and holes
are kept. The core, `polygonize_array`, is a pure function of one array and its affine
transform: each class is labelled into 4-connected components (scipy), the component-id image
is polygonized with ``rasterio.features.shapes`` (GDAL's polygonizer: the same rings as
``gdal_polygonize.py``), and every per-region number -- class, pixel count, mean confidence --
comes from ``np.bincount`` over the component ids, exactly, without rasterizing back. With
8-connectivity the 4-connected parts of each 8-connected region are grouped into one
MultiPolygon (valid, unlike GDAL's self-touching 8-connected rings). A block-wise (Dask)
version can call the same functions per block and merge across seams.

`vectorize_raster` is the file-level stage: it reads classes.tif (+ confidence.tif), adds
areas and perimeters in metres, and writes a styled GeoPackage through `geoseg.io.vector`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import IntEnum
from itertools import chain
from pathlib import Path

import numpy as np
import pyproj
import rasterio
import rasterio.errors
import rasterio.features
import shapely
from affine import Affine
from scipy import ndimage

from geoseg.classes import CLASS_NODATA, ClassInfo, validate_classes
from geoseg.errors import ConfigError, SceneError
from geoseg.io.vector import LayerGeometry, write_polygons_gpkg

UNKNOWN_CLASS_COLOR = "#808080"
"""Style colour for class values found in a raster but missing from the class list."""

BUILTIN_FIELDS = (
    "class_id",
    "class_name",
    "pixel_count",
    "area_m2",
    "perimeter_m",
    "mean_confidence",
)
"""Attribute columns of a written polygon layer, in order (extra attributes follow)."""


class Connectivity(IntEnum):
    """Which pixel neighbours join a region: edges only (4) or edges and corners (8)."""

    FOUR = 4
    EIGHT = 8


@dataclass(frozen=True, eq=False)
class PolygonTable:
    """Parallel per-region arrays: one row per connected region of one class.

    ``geometry`` holds shapely Polygons (4-connectivity) or, where an 8-connected region is
    joined only through pixel corners, MultiPolygons: an OGC-valid polygon cannot have parts
    that touch only at a point. ``mean_confidence`` is NaN where no confidence was given.
    """

    geometry: np.ndarray
    class_id: np.ndarray
    pixel_count: np.ndarray
    mean_confidence: np.ndarray

    def __len__(self) -> int:
        return len(self.geometry)


@dataclass(frozen=True)
class VectorizeResult:
    """What `vectorize_raster` wrote: the GeoPackage and per-class polygon counts and areas.

    The per-class dicts have an entry for every class in the class list (0 if absent) and for
    any unlisted class value found in the raster.
    """

    path: Path
    n_polygons: int
    polygons_per_class: dict[int, int] = field(default_factory=dict)
    area_m2_per_class: dict[int, float] = field(default_factory=dict)


# --------------------------------------------------------------------------- pure core


def label_components(
    classes: np.ndarray,
    *,
    nodata: int = CLASS_NODATA,
    connectivity: Connectivity = Connectivity.FOUR,
) -> tuple[np.ndarray, np.ndarray]:
    """Label connected regions of equal class value.

    Returns ``(labels, component_class)``: an int32 image with 0 on nodata and ids 1..n on
    regions (numbered class by class, each in scan order), and the class value of each
    component id (``component_class[id - 1]``).
    """
    structure = ndimage.generate_binary_structure(2, 1 if connectivity == Connectivity.FOUR else 2)
    labels = np.zeros(classes.shape, dtype=np.int32)
    component_class: list[np.ndarray] = []
    offset = 0
    for value in np.unique(classes):
        if value == nodata:
            continue
        class_labels, n = ndimage.label(classes == value, structure=structure, output=np.int32)
        inside = class_labels > 0
        labels[inside] = class_labels[inside] + offset
        component_class.append(np.full(n, value, dtype=classes.dtype))
        offset += n
    if component_class:
        return labels, np.concatenate(component_class)
    return labels, np.empty(0, dtype=classes.dtype)


def polygonize_labels(labels: np.ndarray, transform: Affine) -> np.ndarray:
    """Polygons of a 4-connected component-id image (0 = nothing): element ``i`` is id ``i+1``.

    GDAL's polygonizer (``rasterio.features.shapes``) traces the rings; they are turned into
    shapely polygons in bulk (one array of all vertices), which is several times faster than
    one shapely call per polygon. Refuses ids that are not exactly 1..max, one polygon each.
    """
    n = int(labels.max(initial=0))
    ids: list[int] = []
    rings: list[list[tuple[float, float]]] = []
    ring_owner: list[int] = []
    if n:
        shapes = rasterio.features.shapes(
            labels, mask=labels > 0, connectivity=4, transform=transform
        )
        for index, (geojson, value) in enumerate(shapes):
            ids.append(int(value))
            coordinates = geojson["coordinates"]
            rings.extend(coordinates)
            ring_owner.extend([index] * len(coordinates))
    if sorted(ids) != list(range(1, n + 1)):
        raise RuntimeError(
            f"polygonize: {len(ids)} polygons for {n} connected regions; the labelling and "
            "the polygonizer disagree on connectivity"
        )
    if not n:
        return np.empty(0, dtype=object)
    ring_sizes = np.fromiter(map(len, rings), dtype=np.int64, count=len(rings))
    n_vertices = int(ring_sizes.sum())
    xy = np.fromiter(
        chain.from_iterable(chain.from_iterable(rings)), dtype=np.float64, count=2 * n_vertices
    ).reshape(n_vertices, 2)
    linear_rings = shapely.linearrings(xy, indices=np.repeat(np.arange(len(rings)), ring_sizes))
    polygons = shapely.polygons(linear_rings, indices=np.asarray(ring_owner))  # shell first
    by_id = np.empty(n, dtype=object)
    by_id[np.asarray(ids) - 1] = polygons
    return by_id


def _group_parts(parts: np.ndarray, owner: np.ndarray, n_groups: int) -> np.ndarray:
    """One geometry per group: the Polygon itself for one part, else a MultiPolygon."""
    order = np.argsort(owner, kind="stable")
    sorted_owner = owner[order]
    sorted_parts = parts[order]
    multi = shapely.multipolygons(sorted_parts, indices=sorted_owner)
    first = sorted_parts[np.searchsorted(sorted_owner, np.arange(n_groups))]
    single = np.bincount(owner, minlength=n_groups) == 1
    return np.where(single, first, multi)


def _repair_if_invalid(geometries: np.ndarray) -> np.ndarray:
    """Safety net: make any OGC-invalid polygon valid without changing the covered area.

    GDAL's 4-connected rings are valid (holes touch shells at most at points), so this
    normally finds nothing to do.
    """
    invalid = ~shapely.is_valid(geometries)
    if not invalid.any():
        return geometries
    geometries = geometries.copy()
    geometries[invalid] = shapely.make_valid(
        geometries[invalid], method="structure", keep_collapsed=False
    )
    types = shapely.get_type_id(geometries[invalid])
    if not np.isin(types, [shapely.GeometryType.POLYGON, shapely.GeometryType.MULTIPOLYGON]).all():
        raise RuntimeError("polygonize: repairing a region gave a non-polygonal geometry")
    return geometries


def polygonize_array(
    classes: np.ndarray,
    transform: Affine,
    *,
    nodata: int = CLASS_NODATA,
    connectivity: Connectivity = Connectivity.FOUR,
    confidence: np.ndarray | None = None,
) -> PolygonTable:
    """Polygonize a class array: one row per connected region of equal class value.

    ``classes`` is an integer (normally uint8) array; pixels equal to ``nodata`` are never
    vectorized and become holes in the regions around them. ``transform`` maps pixel (col,
    row) to map coordinates. ``confidence`` (same shape, any numeric dtype, NaN = unknown)
    gives each region's mean over its pixels that have a value. Pure: no I/O.

    Rows are ordered by class value, then by the region's first pixel in row-major order.
    With 8-connectivity a region is the union of its 4-connected parts, which are valid
    polygons touching only at corners; several parts make a (valid) MultiPolygon. This covers
    exactly what ``gdal_polygonize.py -8`` covers, whose rings touch themselves at those
    corners and are therefore not OGC-valid.
    """
    classes = np.asarray(classes)
    connectivity = Connectivity(connectivity)
    if classes.ndim != 2 or not np.issubdtype(classes.dtype, np.integer):
        raise ConfigError(
            f"polygonize: classes must be a 2-D integer array, got {classes.dtype} {classes.shape}"
        )
    if confidence is not None and np.shape(confidence) != classes.shape:
        raise ConfigError(
            f"polygonize: confidence shape {np.shape(confidence)} differs from the class "
            f"array's {classes.shape}; pass the confidence raster of the same scene"
        )
    labels, component_class = label_components(classes, nodata=nodata)
    geometry = _repair_if_invalid(polygonize_labels(labels, transform))
    if connectivity == Connectivity.EIGHT:
        labels8, component_class = label_components(
            classes, nodata=nodata, connectivity=Connectivity.EIGHT
        )
        part_of = np.zeros(len(geometry) + 1, dtype=np.int64)
        part_of[labels.ravel()] = labels8.ravel()  # every pixel of a 4-part has one 8-id
        geometry = _group_parts(geometry, part_of[1:] - 1, len(component_class))
        labels = labels8
    n = len(component_class)

    flat = labels.ravel()
    pixel_count = np.bincount(flat, minlength=n + 1)[1:].astype(np.int64)
    mean_confidence = np.full(n, np.nan)
    if confidence is not None:
        values = np.asarray(confidence, dtype=np.float64).ravel()
        has_value = (flat > 0) & np.isfinite(values)
        sums = np.bincount(flat[has_value], weights=values[has_value], minlength=n + 1)[1:]
        counts = np.bincount(flat[has_value], minlength=n + 1)[1:]
        np.divide(sums, counts, out=mean_confidence, where=counts > 0)
    return PolygonTable(
        geometry=geometry,
        class_id=component_class.astype(np.int32),
        pixel_count=pixel_count,
        mean_confidence=mean_confidence,
    )


def _horizontal_crs(crs: pyproj.CRS) -> pyproj.CRS:
    if crs.is_bound:
        crs = crs.source_crs
    if crs.is_compound:
        crs = crs.sub_crs_list[0]
    return crs


def measure_m(geometries: np.ndarray, crs: pyproj.CRS) -> tuple[np.ndarray, np.ndarray]:
    """Area (m²) and perimeter (m, holes included) of polygons in ``crs``.

    Projected CRS: planar measures scaled by the linear unit (feet -> metres). Geographic CRS:
    geodesic measures on the CRS's ellipsoid.
    """
    crs = _horizontal_crs(crs)
    geometries = np.asarray(geometries, dtype=object)
    if crs.is_geographic:
        geod = crs.get_geod()
        if geod is None:
            raise ConfigError(f"CRS {crs.name!r} has no ellipsoid; cannot compute areas")
        # Shells CCW, holes CW, so hole areas are subtracted. pyproj's perimeter leaves holes
        # out; measure every ring's geodesic length instead, as the planar branch does.
        oriented = shapely.orient_polygons(geometries)
        area = np.array(
            [abs(geod.geometry_area_perimeter(g)[0]) for g in oriented], dtype=np.float64
        )
        perimeter = np.array(
            [geod.geometry_length(b) for b in shapely.boundary(geometries)], dtype=np.float64
        )
        return area.reshape(-1), perimeter.reshape(-1)
    if crs.is_projected:
        to_m = crs.axis_info[0].unit_conversion_factor
        return shapely.area(geometries) * to_m**2, shapely.length(geometries) * to_m
    raise ConfigError(
        f"CRS {crs.name!r} is neither projected nor geographic: areas in m² are undefined; "
        "reproject the raster to a projected CRS"
    )


# --------------------------------------------------------------------------- file stage


def _open_error(path: Path, exc: Exception) -> SceneError:
    return SceneError(
        f"{path}: cannot be read as a raster ({exc}); check the path and that the file is a "
        "complete GeoTIFF"
    )


def _read_class_raster(path: Path) -> tuple[np.ndarray, Affine, pyproj.CRS]:
    """Band 1 as uint8 with every masked pixel (nodata value or mask band) set to 255."""
    try:
        with rasterio.open(path) as src:
            if src.crs is None:
                raise SceneError(
                    f"{path}: the class raster has no CRS, so polygons cannot be placed on a "
                    "map; assign one (gdal_edit.py -a_srs EPSG:<code>) or predict from a "
                    "georeferenced scene"
                )
            data = src.read(1)
            mask = src.read_masks(1)
            transform = src.transform
            crs = pyproj.CRS.from_wkt(src.crs.to_wkt())
    except rasterio.errors.RasterioError as exc:
        raise _open_error(path, exc) from exc
    if not np.issubdtype(data.dtype, np.integer):
        raise SceneError(
            f"{path}: band 1 is {data.dtype}, not a class raster; vectorize the uint8 "
            "classes.tif written by prediction"
        )
    valid = mask > 0
    if valid.any() and (data[valid].min() < 0 or data[valid].max() >= CLASS_NODATA):
        raise SceneError(
            f"{path}: class values must be 0..254 (255 = nodata), found "
            f"{data[valid].min()}..{data[valid].max()}; vectorize the classes.tif written by "
            "prediction"
        )
    classes = np.where(valid, data, CLASS_NODATA).astype(np.uint8)
    return classes, transform, crs


def _read_confidence(path: Path, shape: tuple[int, int], transform: Affine) -> np.ndarray:
    """Band 1 as float64 (0..100), NaN where masked; must share the class raster's grid."""
    try:
        with rasterio.open(path) as src:
            if (src.height, src.width) != shape or not src.transform.almost_equals(transform):
                raise SceneError(
                    f"{path}: the confidence raster's grid ({src.height}x{src.width}, "
                    f"{tuple(src.transform)[:6]}) differs from the class raster's ({shape[0]}x"
                    f"{shape[1]}, {tuple(transform)[:6]}); pass the confidence.tif of the same "
                    "prediction"
                )
            values = src.read(1).astype(np.float64)
            mask = src.read_masks(1)
    except rasterio.errors.RasterioError as exc:
        raise _open_error(path, exc) from exc
    values[mask == 0] = np.nan
    return values


def _class_styles(classes: Sequence[ClassInfo], present: np.ndarray) -> tuple[ClassInfo, ...]:
    """The class list plus a grey ``class <id>`` entry for each unlisted value present."""
    known = {c.id for c in classes}
    extra = tuple(
        ClassInfo(int(v), f"class {int(v)}", UNKNOWN_CLASS_COLOR)
        for v in np.unique(present)
        if int(v) not in known
    )
    return (*classes, *extra)


def vectorize_raster(
    classes_path: str | os.PathLike[str],
    out_path: str | os.PathLike[str],
    *,
    classes: Sequence[ClassInfo],
    confidence_path: str | os.PathLike[str] | None = None,
    connectivity: Connectivity = Connectivity.FOUR,
    extra_attributes: Mapping[str, str] | None = None,
    layer: str = "landcover",
) -> VectorizeResult:
    """Polygonize a class raster into a styled GeoPackage layer (+ ``.qml`` beside it).

    Columns: class_id, class_name, pixel_count, area_m2, perimeter_m, mean_confidence (0..100,
    NULL without a confidence raster) and each of ``extra_attributes`` as a constant string
    column (e.g. scene, model_sha256). Class values missing from ``classes`` are kept and
    named ``class <id>``. Whole rasters are read into memory (single process).
    """
    classes = validate_classes(classes)
    extra = dict(extra_attributes or {})
    clashes = sorted(set(extra) & set(BUILTIN_FIELDS))
    if clashes:
        raise ConfigError(
            f"extra attributes {clashes} would replace built-in columns; rename them "
            f"(built-in: {', '.join(BUILTIN_FIELDS)})"
        )
    classes_path = Path(classes_path)
    class_array, transform, crs = _read_class_raster(classes_path)
    confidence = (
        None
        if confidence_path is None
        else _read_confidence(Path(confidence_path), class_array.shape, transform)
    )
    table = polygonize_array(
        class_array, transform, connectivity=connectivity, confidence=confidence
    )
    area_m2, perimeter_m = measure_m(table.geometry, crs)

    styles = _class_styles(classes, table.class_id)
    names = {c.id: c.name for c in styles}
    n = len(table)
    attributes: dict[str, np.ndarray] = {
        "class_id": table.class_id,
        "class_name": np.array([names[int(c)] for c in table.class_id], dtype=object),
        "pixel_count": table.pixel_count,
        "area_m2": area_m2,
        "perimeter_m": perimeter_m,
        "mean_confidence": table.mean_confidence,
    }
    for name, value in extra.items():
        attributes[name] = np.full(n, str(value), dtype=object)

    # One layer type per connectivity, whatever the data: corner-joined 8-connected regions
    # are MultiPolygons, so every 8-connected feature is written as one.
    geometry_type = LayerGeometry.MULTIPOLYGON if connectivity == Connectivity.EIGHT else None
    path = write_polygons_gpkg(
        out_path,
        table.geometry,
        attributes,
        crs.to_wkt(),
        styles,
        layer=layer,
        geometry_type=geometry_type,
    )
    polygons_per_class = {c.id: 0 for c in styles}
    area_per_class = {c.id: 0.0 for c in styles}
    for cid, area in zip(table.class_id.tolist(), area_m2.tolist(), strict=True):
        polygons_per_class[cid] += 1
        area_per_class[cid] += area
    return VectorizeResult(
        path=path,
        n_polygons=n,
        polygons_per_class=polygons_per_class,
        area_m2_per_class=area_per_class,
    )
