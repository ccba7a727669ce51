"""Class raster -> land-cover polygons with per-region attributes, block-wise and in parallel.

One feature per connected region of equal class value; nodata is never vectorized and holes
are kept. The core, `polygonize_array`, is a pure function of one array and its affine
transform: each class is labelled into 4-connected components (scipy), the component-id image
is polygonized with ``rasterio.features.shapes`` (GDAL's polygonizer: the same rings as
``gdal_polygonize.py``), and every per-region number -- class, pixel count, confidence sums --
comes from ``np.bincount`` over the component ids, exactly, without rasterizing back. With
8-connectivity the 4-connected parts of each 8-connected region are grouped into one
MultiPolygon (valid, unlike GDAL's self-touching 8-connected rings).

`vectorize_raster` is the file-level stage. The raster is cut into square blocks
(`BlockGrid`); each block is read by the worker that polygonizes it (windowed reads: the
raster never passes through the client). Everything is computed in pixel coordinates, where
block seams are exact integers, and mapped to the CRS with GDAL's own formula at the end, so
coordinates are bit-identical to a single pass. A region that touches no seam is complete: it
is finished in its block (area, perimeter, mean confidence) and streamed to the GeoPackage
writer as soon as its block is done. Only the pieces that touch a seam stay on the workers.
Their labels along the block edges are compared across each seam; pieces of one region are
grouped by a union-find (connected components of the seam graph); each merge task fetches
just the pieces of its groups and unions them (a coverage union of pieces whose seam edges
are cut at every pixel; GEOS's overlay union for 8-connected corner touches). No worker ever
holds more than its blocks and the groups it merges. Pixel counts and confidence sums add up
exactly across seams. The result is the polygon set of one single pass (and of
``gdal_polygonize``), vertex for vertex: collinear vertices left at the seams are removed.

Options: ``min_area_m2`` first merges smaller regions into their largest neighbour exactly as
GDAL's sieve filter (``rasterio.features.sieve``) does on the whole raster -- not
approximately with halos: region sizes and neighbour choices are made global through the same
seam graph (see the sieve section). ``simplify_m`` simplifies each block's regions as one
coverage (``shapely.coverage_simplify``, nodata included) with the block outline fixed;
after merging, every boundary along a seam has a vertex at each node (where a boundary meets
the seam from either side) and none in between, so shared boundaries stay shared and there
are no gaps or overlaps, across seams too. The price: a boundary that crosses a seam keeps
its crossing point.

Rasters that fit in one block never start Dask; larger ones run on any ``dask.distributed``
client: a LocalCluster started here (``workers`` processes) or an existing scheduler. With
``workers=0`` the same block tasks run one after another in this process.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from enum import IntEnum
from functools import lru_cache
from itertools import chain
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import pyproj
import rasterio
import rasterio.errors
import rasterio.features
import shapely
from affine import Affine
from rasterio.windows import Window
from scipy import ndimage
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from geoseg.classes import CLASS_NODATA, ClassInfo, validate_classes
from geoseg.errors import ConfigError, SceneError
from geoseg.io.vector import LayerGeometry, PolygonLayerWriter, as_multipolygons

if TYPE_CHECKING:
    from distributed import Client

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

DEFAULT_BLOCK_PX = 2048
"""Default block edge. Workers peaked at ~300 MB RSS (~100 MB above an idle worker) on a
10k x 10k raster with it, and would on any larger one: memory follows the block, not the
raster."""

MERGE_BATCH_PIECES = 5000
"""Most seam pieces per merge task (a group of pieces of one region is never split); fewer
when that gives each worker at least two merge tasks."""

WRITE_BATCH_FEATURES = 20_000
"""Rows the client buffers before appending them to the GeoPackage in one transaction."""

DASK_CONNECT_TIMEOUT_S = 10.0
"""How long to try reaching a scheduler given by address before giving up."""

_MAX_DEFAULT_WORKERS = 8
_TOP, _BOTTOM, _LEFT, _RIGHT = range(4)
_NO_VALUE = -1


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

    The per-class dicts (names too) have an entry for every class in the class list (0 if
    absent) and for any unlisted class value found in the raster. ``blocks`` is the number of
    blocks the raster was cut into, ``dask_workers`` the workers of the Dask cluster used (0:
    no Dask).
    """

    path: Path
    n_polygons: int
    polygons_per_class: dict[int, int] = field(default_factory=dict)
    area_m2_per_class: dict[int, float] = field(default_factory=dict)
    blocks: int = 1
    dask_workers: int = 0
    class_names: dict[int, str] = field(default_factory=dict)


@dataclass(frozen=True)
class VectorizeOptions:
    """How `vectorize_raster` splits, distributes and cleans up the work.

    ``block_size_px``: edge of the square blocks; worker memory grows with its square, not
    with the raster. ``workers``: processes of the LocalCluster started when the raster has
    more than one block (None: one per CPU core, at most 8; 0: no Dask -- blocks are processed
    one after another in this process, still with bounded memory). ``dask_address``: use this
    running scheduler instead (``tcp://host:8786``); its workers must be able to read the
    raster paths. ``min_area_m2``: regions smaller than this are merged into their largest
    neighbour first (GDAL's sieve, exact across blocks). ``simplify_m``: coverage
    simplification tolerance in metres (0: none).
    """

    block_size_px: int = DEFAULT_BLOCK_PX
    workers: int | None = None
    dask_address: str | None = None
    min_area_m2: float = 0.0
    simplify_m: float = 0.0

    @property
    def uses_dask(self) -> bool:
        """Whether rasters of several blocks go to Dask (False: ``workers=0``, no address)."""
        return self.dask_address is not None or self.workers != 0

    def __post_init__(self) -> None:
        if isinstance(self.block_size_px, bool) or self.block_size_px < 1:
            raise ConfigError(
                f"--block-size: {self.block_size_px} px is not a block size; give a positive "
                f"number of pixels (default {DEFAULT_BLOCK_PX})"
            )
        if self.workers is not None and self.workers < 0:
            raise ConfigError(
                f"--workers: {self.workers} is negative; give a number of worker processes "
                "(0 = no Dask, blocks one after another in this process)"
            )
        for option, value in (("--min-area", self.min_area_m2), ("--simplify", self.simplify_m)):
            if not math.isfinite(value) or value < 0:
                raise ConfigError(f"{option}: {value} must be a finite number >= 0 (metres)")


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


def _traced_polygons(
    shapes: Iterator[tuple[dict[str, Any], float]],
) -> tuple[np.ndarray, np.ndarray]:
    """Polygons and values from ``rasterio.features.shapes`` output, built in bulk.

    One array of all vertices and two vectorized shapely calls instead of one shapely call per
    polygon: several times faster for the many small polygons of a land-cover map.
    """
    values: list[float] = []
    rings: list[list[tuple[float, float]]] = []
    ring_owner: list[int] = []
    for index, (geojson, value) in enumerate(shapes):
        values.append(value)
        coordinates = geojson["coordinates"]
        rings.extend(coordinates)
        ring_owner.extend([index] * len(coordinates))
    if not values:
        return np.empty(0, dtype=object), np.empty(0, dtype=np.int64)
    ring_sizes = np.fromiter(map(len, rings), dtype=np.int64, count=len(rings))
    n_vertices = int(ring_sizes.sum())
    xy = np.fromiter(
        chain.from_iterable(chain.from_iterable(rings)), dtype=np.float64, count=2 * n_vertices
    ).reshape(n_vertices, 2)
    linear_rings = shapely.linearrings(xy, indices=np.repeat(np.arange(len(rings)), ring_sizes))
    polygons = shapely.polygons(linear_rings, indices=np.asarray(ring_owner))  # shell first
    return np.asarray(polygons, dtype=object), np.asarray(values).astype(np.int64)


def polygonize_labels(labels: np.ndarray, transform: Affine) -> np.ndarray:
    """Polygons of a 4-connected component-id image (0 = nothing): element ``i`` is id ``i+1``.

    GDAL's polygonizer (``rasterio.features.shapes``) traces the rings; they are turned into
    shapely polygons in bulk (`_traced_polygons`). Refuses ids that are not exactly 1..max,
    one polygon each.
    """
    n = int(labels.max(initial=0))
    polygons, ids = np.empty(0, dtype=object), np.empty(0, dtype=np.int64)
    if n:
        polygons, ids = _traced_polygons(
            rasterio.features.shapes(labels, mask=labels > 0, connectivity=4, transform=transform)
        )
    if not np.array_equal(np.sort(ids), np.arange(1, n + 1)):
        raise RuntimeError(
            f"polygonize: {len(ids)} polygons for {n} connected regions; the labelling and "
            "the polygonizer disagree on connectivity"
        )
    by_id = np.empty(n, dtype=object)
    by_id[ids - 1] = polygons
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


def _polygonize_regions(
    classes: np.ndarray, transform: Affine, *, nodata: int, connectivity: Connectivity
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(geometry, class per region, label image)``; label ``i + 1`` is row ``i``."""
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
    return geometry, component_class, labels


def _region_sums(
    labels: np.ndarray, n: int, confidence: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per region: pixel count, sum and count of the confidence pixels that have a value.

    Sums, not means, so that pieces of one region from several blocks add up exactly.
    """
    flat = labels.ravel()
    pixel_count = np.bincount(flat, minlength=n + 1)[1:].astype(np.int64)
    if confidence is None:
        return pixel_count, np.zeros(n), np.zeros(n, dtype=np.int64)
    values = np.asarray(confidence, dtype=np.float64).ravel()
    has_value = (flat > 0) & np.isfinite(values)
    sums = np.bincount(flat[has_value], weights=values[has_value], minlength=n + 1)[1:]
    counts = np.bincount(flat[has_value], minlength=n + 1)[1:].astype(np.int64)
    return pixel_count, sums, counts


def _mean(sums: np.ndarray, counts: np.ndarray) -> np.ndarray:
    mean = np.full(len(sums), np.nan)
    np.divide(sums, counts, out=mean, where=counts > 0)
    return mean


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
    geometry, component_class, labels = _polygonize_regions(
        classes, transform, nodata=nodata, connectivity=connectivity
    )
    pixel_count, sums, counts = _region_sums(labels, len(component_class), confidence)
    return PolygonTable(
        geometry=geometry,
        class_id=component_class.astype(np.int32),
        pixel_count=pixel_count,
        mean_confidence=_mean(sums, counts),
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


def pixel_to_map(geometries: np.ndarray, transform: Affine) -> np.ndarray:
    """Map geometries in pixel (col, row) coordinates to the CRS of ``transform``.

    Uses GDAL's own formula and evaluation order (``x = c + a*col + b*row``), so polygons
    traced in pixel space get exactly the coordinates GDAL's polygonizer gives them.
    """
    a, b, c, d, e, f = tuple(transform)[:6]

    def affine(xy: np.ndarray) -> np.ndarray:
        col, row = xy[:, 0], xy[:, 1]
        return np.column_stack((c + a * col + b * row, f + d * col + e * row))

    return shapely.transform(np.asarray(geometries, dtype=object), affine)


# --------------------------------------------------------------------------- blocks


@dataclass(frozen=True)
class Block:
    """One block of a `BlockGrid`: its pixel window and which of its edges are seams.

    A seam is an edge shared with another block; the raster's own outline is not one.
    """

    index: int
    grid_row: int
    grid_col: int
    row_off: int
    col_off: int
    height: int
    width: int
    seam_top: bool
    seam_bottom: bool
    seam_left: bool
    seam_right: bool

    @property
    def window(self) -> Window:
        return Window(self.col_off, self.row_off, self.width, self.height)


@dataclass(frozen=True)
class BlockGrid:
    """A raster of ``height_px`` x ``width_px`` cut into ``block_px`` squares, row-major.

    The last row and column of blocks are smaller when ``block_px`` does not divide the size.
    """

    height_px: int
    width_px: int
    block_px: int

    def __post_init__(self) -> None:
        if min(self.height_px, self.width_px, self.block_px) < 1:
            raise ConfigError(f"block grid: sizes must be positive, got {self}")

    @property
    def n_rows(self) -> int:
        return -(-self.height_px // self.block_px)

    @property
    def n_cols(self) -> int:
        return -(-self.width_px // self.block_px)

    def __len__(self) -> int:
        return self.n_rows * self.n_cols

    def block(self, grid_row: int, grid_col: int) -> Block:
        row_off, col_off = grid_row * self.block_px, grid_col * self.block_px
        return Block(
            index=grid_row * self.n_cols + grid_col,
            grid_row=grid_row,
            grid_col=grid_col,
            row_off=row_off,
            col_off=col_off,
            height=min(self.block_px, self.height_px - row_off),
            width=min(self.block_px, self.width_px - col_off),
            seam_top=grid_row > 0,
            seam_bottom=grid_row < self.n_rows - 1,
            seam_left=grid_col > 0,
            seam_right=grid_col < self.n_cols - 1,
        )

    def blocks(self) -> list[Block]:
        return [self.block(r, c) for r in range(self.n_rows) for c in range(self.n_cols)]


@dataclass(frozen=True)
class _Job:
    """Everything a worker needs to process any block of one raster (small, picklable)."""

    classes_path: str
    confidence_path: str | None
    height_px: int
    width_px: int
    transform: Affine
    crs_wkt: str
    connectivity: Connectivity
    block_px: int = DEFAULT_BLOCK_PX
    sieve_px: int = 0
    simplify_px: float = 0.0


@dataclass(frozen=True, eq=False)
class _Edges:
    """Region labels and class values along a block's top, bottom, left and right edges."""

    labels: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]
    classes: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]


@dataclass(frozen=True, eq=False)
class _Pieces:
    """Regions (or pieces of regions) in pixel coordinates with their additive numbers."""

    geometry: np.ndarray
    class_id: np.ndarray
    pixel_count: np.ndarray
    confidence_sum: np.ndarray
    confidence_count: np.ndarray

    def __len__(self) -> int:
        return len(self.geometry)

    def take(self, index: np.ndarray) -> _Pieces:
        return _Pieces(
            self.geometry[index],
            self.class_id[index],
            self.pixel_count[index],
            self.confidence_sum[index],
            self.confidence_count[index],
        )

    @staticmethod
    def concat(parts: Sequence[_Pieces]) -> _Pieces:
        return _Pieces(
            *(
                np.concatenate([getattr(p, name) for p in parts])
                for name in (
                    "geometry",
                    "class_id",
                    "pixel_count",
                    "confidence_sum",
                    "confidence_count",
                )
            )
        )


@dataclass(frozen=True, eq=False)
class _Features:
    """Finished regions ready for the GeoPackage: WKB in the CRS and the numeric columns."""

    wkb: np.ndarray
    class_id: np.ndarray
    pixel_count: np.ndarray
    area_m2: np.ndarray
    perimeter_m: np.ndarray
    mean_confidence: np.ndarray

    def __len__(self) -> int:
        return len(self.wkb)

    @staticmethod
    def empty() -> _Features:
        return _Features(
            *(np.empty(0, dtype=t) for t in (object, np.int32, np.int64, float, float, float))
        )

    @staticmethod
    def concat(parts: Sequence[_Features]) -> _Features:
        names = ("wkb", "class_id", "pixel_count", "area_m2", "perimeter_m", "mean_confidence")
        return _Features(*(np.concatenate([getattr(p, n) for p in parts]) for n in names))


@dataclass(frozen=True, eq=False)
class _BlockOutput:
    """A polygonized block: finished interior regions, seam pieces, and its edge labels."""

    features: _Features
    edges: _Edges
    seam_ids: np.ndarray
    seams: _Pieces


def _open_error(path: Path, exc: Exception) -> SceneError:
    return SceneError(
        f"{path}: cannot be read as a raster ({exc}); check the path and that the file is a "
        "complete GeoTIFF"
    )


def _read_block(job: _Job, block: Block) -> np.ndarray:
    """Band 1 of the block as uint8 with every masked pixel (nodata or mask band) set to 255."""
    path = Path(job.classes_path)
    try:
        with rasterio.open(path) as src:
            data = src.read(1, window=block.window)
            mask = src.read_masks(1, window=block.window)
    except rasterio.errors.RasterioError as exc:
        raise _open_error(path, exc) from exc
    valid = mask > 0
    if valid.any() and (data[valid].min() < 0 or data[valid].max() >= CLASS_NODATA):
        raise SceneError(
            f"{path}: class values must be 0..254 (255 = nodata), found "
            f"{data[valid].min()}..{data[valid].max()}; vectorize the classes.tif written by "
            "prediction"
        )
    return np.where(valid, data, CLASS_NODATA).astype(np.uint8)


def _read_block_confidence(job: _Job, block: Block) -> np.ndarray | None:
    """Band 1 of the confidence raster in the block as float64, NaN where masked."""
    if job.confidence_path is None:
        return None
    path = Path(job.confidence_path)
    try:
        with rasterio.open(path) as src:
            values = src.read(1, window=block.window).astype(np.float64)
            mask = src.read_masks(1, window=block.window)
    except rasterio.errors.RasterioError as exc:
        raise _open_error(path, exc) from exc
    values[mask == 0] = np.nan
    return values


def _label_strips(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    return tuple(  # type: ignore[return-value]
        np.ascontiguousarray(s) for s in (labels[0, :], labels[-1, :], labels[:, 0], labels[:, -1])
    )


def _edges_of(
    label_strips: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray], classes: np.ndarray
) -> _Edges:
    return _Edges(label_strips, _label_strips(classes))


def _seam_labels(
    label_strips: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray], block: Block
) -> np.ndarray:
    """Sorted ids of the regions that touch one of the block's seams."""
    seams = (block.seam_top, block.seam_bottom, block.seam_left, block.seam_right)
    parts = [strip for strip, is_seam in zip(label_strips, seams, strict=True) if is_seam]
    if not parts:
        return np.empty(0, dtype=np.int32)
    ids = np.unique(np.concatenate(parts))
    return ids[ids > 0]


def _fill_intervals(
    length: int, start: np.ndarray, stop: np.ndarray, value: np.ndarray
) -> np.ndarray:
    """An int32 array of ``length`` zeros with ``[start, stop)`` set to ``value`` (disjoint)."""
    out = np.zeros(length, dtype=np.int32)
    sizes = (stop - start).astype(np.int64)
    total = int(sizes.sum())
    if total:
        offset = np.arange(total) - np.repeat(np.cumsum(sizes) - sizes, sizes)
        out[np.repeat(start, sizes).astype(np.int64) + offset] = np.repeat(value, sizes)
    return out


def _traced_strips(
    geometry: np.ndarray, block: Block
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Region ids (row + 1) along the block's seams, read off the traced rings.

    Polygons traced in one block have their pixels on a block edge exactly where their rings
    run along that edge's line (pixel coordinates, integers), so the ring segments on the
    line give the edge labels without rasterizing. Edges that are not seams stay 0.
    """
    h, w = block.height, block.width
    x0, y0 = block.col_off, block.row_off
    sides = (  # (is seam, fixed axis, line, varying axis, first pixel, strip length)
        (block.seam_top, 1, y0, 0, x0, w),
        (block.seam_bottom, 1, y0 + h, 0, x0, w),
        (block.seam_left, 0, x0, 1, y0, h),
        (block.seam_right, 0, x0 + w, 1, y0, h),
    )
    strips = [np.zeros(length, dtype=np.int32) for *_, length in sides]
    if not len(geometry):
        return tuple(strips)  # type: ignore[return-value]
    bounds = shapely.bounds(geometry)
    on_frame = (
        (bounds[:, 0] == x0) | (bounds[:, 1] == y0) | (bounds[:, 2] == x0 + w)
        | (bounds[:, 3] == y0 + h)
    )  # fmt: skip
    candidates = np.flatnonzero(on_frame)
    rings, ring_owner = shapely.get_rings(geometry[candidates], return_index=True)
    xy, vertex_ring = shapely.get_coordinates(rings, return_index=True)
    a, b = xy[:-1], xy[1:]
    segment = vertex_ring[:-1] == vertex_ring[1:]
    owner = candidates[ring_owner[vertex_ring[:-1]]] + 1
    for side, (is_seam, fixed, line, varying, first, length) in enumerate(sides):
        if not is_seam:
            continue
        on = segment & (a[:, fixed] == line) & (b[:, fixed] == line)
        lo = np.minimum(a[on, varying], b[on, varying]) - first
        hi = np.maximum(a[on, varying], b[on, varying]) - first
        strips[side] = _fill_intervals(length, lo, hi, owner[on])
    return tuple(strips)  # type: ignore[return-value]


@lru_cache(maxsize=4)
def _crs(wkt: str) -> pyproj.CRS:
    return pyproj.CRS.from_wkt(wkt)


def _finish(job: _Job, pieces: _Pieces) -> _Features:
    """Complete regions in pixel space -> WKB in the CRS with area, perimeter, mean."""
    geometry = pixel_to_map(pieces.geometry, job.transform)
    area, perimeter = measure_m(geometry, _crs(job.crs_wkt))
    if job.connectivity == Connectivity.EIGHT:
        geometry = as_multipolygons(geometry)
    wkb = shapely.to_wkb(geometry) if len(geometry) else np.empty(0, dtype=object)
    return _Features(
        wkb=wkb,
        class_id=pieces.class_id.astype(np.int32),
        pixel_count=pieces.pixel_count.astype(np.int64),
        area_m2=np.asarray(area, dtype=np.float64),
        perimeter_m=np.asarray(perimeter, dtype=np.float64),
        mean_confidence=_mean(pieces.confidence_sum, pieces.confidence_count),
    )


def _simplify_coverage(
    geometry: np.ndarray, classes: np.ndarray, block: Block, tolerance_px: float
) -> np.ndarray:
    """Simplify a block's regions as one coverage, keeping the block outline fixed.

    Nodata areas join the coverage as extra polygons so their boundaries are simplified like
    any shared edge; then the block's outline is the coverage boundary, which
    ``simplify_boundary=False`` keeps exactly. Shared edges are cut at every pixel corner
    first: GDAL leaves no vertex at T-junctions, and a coverage needs matching vertices.
    """
    origin = Affine.translation(block.col_off, block.row_off)
    nodata = classes == CLASS_NODATA
    extra = np.empty(0, dtype=object)
    if nodata.any():
        nodata_labels, _ = ndimage.label(nodata, output=np.int32)
        extra = _repair_if_invalid(polygonize_labels(nodata_labels, origin))
    x0, y0 = block.col_off, block.row_off
    x1, y1 = x0 + block.width, y0 + block.height

    def inside(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        vertical, horizontal = a[:, 0] == b[:, 0], a[:, 1] == b[:, 1]
        on_frame = (vertical & ((a[:, 0] == x0) | (a[:, 0] == x1))) | (
            horizontal & ((a[:, 1] == y0) | (a[:, 1] == y1))
        )
        return ~on_frame

    coverage = _cut_at_pixels(np.concatenate([geometry, extra]), inside)
    simplified = shapely.coverage_simplify(coverage, tolerance_px, simplify_boundary=False)
    return np.asarray(simplified, dtype=object)[: len(geometry)]


def _polygonize_block(job: _Job, block: Block, sieve: _SievePlan | None) -> _BlockOutput:
    """Worker task: read, (sieve,) polygonize one block; finish the regions inside it.

    4-connected regions without confidence are traced straight from the class values (what
    gdal_polygonize does; pixel counts are the areas in pixel units, seam ids come from the
    rings). With confidence or 8-connectivity the regions are labelled first, for the
    per-region sums and the corner-joined parts.
    """
    classes = _read_block(job, block)
    if sieve is not None:
        classes = _sieve_block(job, block, classes, sieve)
    confidence = _read_block_confidence(job, block)
    origin = Affine.translation(block.col_off, block.row_off)
    if job.connectivity == Connectivity.FOUR and confidence is None:
        geometry, component_class = _traced_polygons(
            rasterio.features.shapes(
                classes, mask=classes != CLASS_NODATA, connectivity=4, transform=origin
            )
        )
        # No `_repair_if_invalid` here: GDAL's 4-connected rings are valid (none of 1e6
        # polygons traced from random noise was not), and the check costs ~10 % of a block.
        n = len(geometry)
        pixel_count = np.rint(shapely.area(geometry)).astype(np.int64)
        sums, counts = np.zeros(n), np.zeros(n, dtype=np.int64)
        strips = _traced_strips(geometry, block)
    else:
        geometry, component_class, labels = _polygonize_regions(
            classes, origin, nodata=CLASS_NODATA, connectivity=job.connectivity
        )
        pixel_count, sums, counts = _region_sums(labels, len(component_class), confidence)
        strips = _label_strips(labels)
    if job.simplify_px > 0 and len(geometry):
        geometry = _simplify_coverage(geometry, classes, block, job.simplify_px)
    pieces = _Pieces(geometry, component_class.astype(np.int32), pixel_count, sums, counts)
    seam_ids = _seam_labels(strips, block)
    interior = np.ones(len(pieces), dtype=bool)
    interior[seam_ids - 1] = False
    return _BlockOutput(
        features=_finish(job, pieces.take(np.flatnonzero(interior))),
        edges=_edges_of(strips, classes),
        seam_ids=seam_ids,
        seams=pieces.take(seam_ids - 1),
    )


def _front_of(out: _BlockOutput) -> tuple[_Features, _Edges, np.ndarray]:
    """What the client fetches from a block: finished features, edge labels, seam ids."""
    return out.features, out.edges, out.seam_ids


def _seams_of(out: _BlockOutput) -> _Pieces:
    """What stays on the worker: the block's seam pieces."""
    return out.seams


def _take_pieces(pieces: _Pieces, positions: np.ndarray) -> _Pieces:
    """Worker task: just the seam pieces one merge task needs from one block."""
    return pieces.take(positions)


# --------------------------------------------------------------------------- seam merge


@dataclass(frozen=True, eq=False)
class _CrossPairs:
    """Pairs of adjacent valid pixels that lie in different blocks: ``a`` and ``b`` ends.

    ``time`` orders the pairs as GDAL's sieve compares neighbours: ``4 * (row * width + col)
    + k`` of the later pixel, ``k`` = 0 up, 1 up-left, 2 up-right, 3 left.
    """

    block_a: np.ndarray
    label_a: np.ndarray
    class_a: np.ndarray
    block_b: np.ndarray
    label_b: np.ndarray
    class_b: np.ndarray
    time: np.ndarray


@dataclass(frozen=True, eq=False)
class _Strip:
    """Pixels along one block edge (or one corner pixel): labels, classes, (row, col)."""

    block: int
    labels: np.ndarray
    classes: np.ndarray
    rows: np.ndarray
    cols: np.ndarray


def _strip(block: Block, edges: _Edges, side: int, part: slice = slice(None)) -> _Strip:
    rows = np.arange(block.row_off, block.row_off + block.height, dtype=np.int64)
    cols = np.arange(block.col_off, block.col_off + block.width, dtype=np.int64)
    if side in (_TOP, _BOTTOM):
        rows = np.full(block.width, rows[0] if side == _TOP else rows[-1])
    else:
        cols = np.full(block.height, cols[0] if side == _LEFT else cols[-1])
    return _Strip(
        block.index, edges.labels[side][part], edges.classes[side][part], rows[part], cols[part]
    )


def _gdal_time(
    rows_a: np.ndarray, cols_a: np.ndarray, rows_b: np.ndarray, cols_b: np.ndarray, width: int
) -> np.ndarray:
    """When GDAL's sieve compares two adjacent pixels (see `_CrossPairs`)."""
    b_later = (rows_b > rows_a) | ((rows_b == rows_a) & (cols_b > cols_a))
    row = np.where(b_later, rows_b, rows_a)
    col = np.where(b_later, cols_b, cols_a)
    dx = col - np.where(b_later, cols_a, cols_b)  # later col - earlier col
    same_row = rows_a == rows_b
    k = np.where(same_row, 3, np.where(dx == 0, 0, np.where(dx == 1, 1, 2)))
    return (row * width + col) * 4 + k


def _cross_pairs(
    grid: BlockGrid, edges: Sequence[_Edges], connectivity: Connectivity
) -> _CrossPairs:
    """Every 4- (or 8-) adjacent pair of valid pixels across a seam, from edge labels only.

    Across a straight seam pixel ``i`` of one side touches pixel ``i`` of the other (and
    ``i +- 1`` with 8-connectivity); with 8-connectivity the corner pixels of diagonal blocks
    touch too.
    """
    eight = connectivity == Connectivity.EIGHT
    shifts = (-1, 0, 1) if eight else (0,)
    sides: list[tuple[_Strip, _Strip, tuple[int, ...]]] = []
    for r in range(grid.n_rows):
        for c in range(grid.n_cols):
            block = grid.block(r, c)
            if c + 1 < grid.n_cols:
                right = grid.block(r, c + 1)
                sides.append(
                    (
                        _strip(block, edges[block.index], _RIGHT),
                        _strip(right, edges[right.index], _LEFT),
                        shifts,
                    )
                )
            if r + 1 < grid.n_rows:
                below = grid.block(r + 1, c)
                sides.append(
                    (
                        _strip(block, edges[block.index], _BOTTOM),
                        _strip(below, edges[below.index], _TOP),
                        shifts,
                    )
                )
            if eight and r + 1 < grid.n_rows and c + 1 < grid.n_cols:
                diagonal = grid.block(r + 1, c + 1)
                sides.append(
                    (
                        _strip(block, edges[block.index], _BOTTOM, slice(-1, None)),
                        _strip(diagonal, edges[diagonal.index], _TOP, slice(0, 1)),
                        (0,),
                    )
                )
            if eight and r + 1 < grid.n_rows and c > 0:
                diagonal = grid.block(r + 1, c - 1)
                sides.append(
                    (
                        _strip(block, edges[block.index], _BOTTOM, slice(0, 1)),
                        _strip(diagonal, edges[diagonal.index], _TOP, slice(-1, None)),
                        (0,),
                    )
                )
    columns: list[list[np.ndarray]] = [[] for _ in range(7)]
    for a, b, offsets in sides:
        n = len(a.labels)
        for shift in offsets:  # a[i] touches b[i + shift]
            ia = slice(max(0, -shift), n - max(0, shift))
            ib = slice(max(0, shift), n + min(0, shift))
            keep = (a.labels[ia] > 0) & (b.labels[ib] > 0)
            if not keep.any():
                continue
            count = int(keep.sum())
            columns[0].append(np.full(count, a.block, dtype=np.int64))
            columns[1].append(a.labels[ia][keep])
            columns[2].append(a.classes[ia][keep])
            columns[3].append(np.full(count, b.block, dtype=np.int64))
            columns[4].append(b.labels[ib][keep])
            columns[5].append(b.classes[ib][keep])
            columns[6].append(
                _gdal_time(
                    a.rows[ia][keep], a.cols[ia][keep], b.rows[ib][keep], b.cols[ib][keep],
                    grid.width_px,
                )
            )  # fmt: skip
    arrays = [
        np.concatenate(col).astype(np.int64) if col else np.empty(0, dtype=np.int64)
        for col in columns
    ]
    return _CrossPairs(*arrays)


@dataclass(frozen=True, eq=False)
class _SeamIndex:
    """Numbering of all seam pieces: block ``k``'s pieces are ``offsets[k]:offsets[k+1]``."""

    offsets: np.ndarray
    keys: np.ndarray

    @staticmethod
    def build(seam_ids: Sequence[np.ndarray]) -> _SeamIndex:
        sizes = np.array([len(s) for s in seam_ids], dtype=np.int64)
        offsets = np.concatenate(([0], np.cumsum(sizes)))
        keys = np.concatenate(
            [(np.int64(k) << 32) | s.astype(np.int64) for k, s in enumerate(seam_ids)]
            or [np.empty(0, dtype=np.int64)]
        )
        return _SeamIndex(offsets, keys)

    def __len__(self) -> int:
        return len(self.keys)

    def find(self, block: np.ndarray, label: np.ndarray) -> np.ndarray:
        """Global piece numbers of (block, label) pairs that are seam pieces."""
        key = (block.astype(np.int64) << 32) | label.astype(np.int64)
        index = np.searchsorted(self.keys, key)
        if len(key) and (
            index.max() >= len(self.keys) or not np.array_equal(self.keys[index], key)
        ):
            raise RuntimeError("seam merge: an edge label is not a seam piece of its block")
        return index

    def block_of(self, piece: np.ndarray) -> np.ndarray:
        return np.searchsorted(self.offsets, piece, side="right") - 1


def _seam_groups(pairs: _CrossPairs, index: _SeamIndex) -> tuple[np.ndarray, int]:
    """Union-find over seam adjacency: the region (group) of every seam piece."""
    same = pairs.class_a == pairs.class_b
    a = index.find(pairs.block_a[same], pairs.label_a[same])
    b = index.find(pairs.block_b[same], pairs.label_b[same])
    n = len(index)
    graph = coo_matrix((np.ones(len(a), dtype=np.int8), (a, b)), shape=(n, n))
    n_groups, group_of = connected_components(graph, directed=False)
    return group_of.astype(np.int64), int(n_groups)


def _merge_batches(group_of: np.ndarray, max_pieces: int) -> list[np.ndarray]:
    """Pieces per merge task, sorted by group; groups are never split across tasks."""
    if not len(group_of):
        return []
    order = np.argsort(group_of, kind="stable")
    sizes = np.bincount(group_of)
    group_batch = (np.cumsum(sizes) - sizes) // max(1, max_pieces)
    piece_batch = group_batch[group_of[order]]
    cuts = np.flatnonzero(np.diff(piece_batch)) + 1
    return np.split(order, cuts)


def _cut_at_pixels(
    geometries: np.ndarray, chosen: Callable[[np.ndarray, np.ndarray], np.ndarray]
) -> np.ndarray:
    """The same polygons with the chosen axis-parallel edges cut at every pixel corner.

    ``chosen(a, b)`` gets the start and end points of all edges (pixel coordinates) and says
    which to cut; the others are kept as they are. Vectorized over all rings.
    """
    if not len(geometries):
        return geometries
    parts, part_owner = shapely.get_parts(geometries, return_index=True)
    rings, ring_owner = shapely.get_rings(parts, return_index=True)
    xy, vertex_ring = shapely.get_coordinates(rings, return_index=True)
    a, b = xy[:-1], xy[1:]
    segment = vertex_ring[:-1] == vertex_ring[1:]
    axis_parallel = (a[:, 0] == b[:, 0]) | (a[:, 1] == b[:, 1])
    cut = segment & axis_parallel & chosen(a, b)
    steps = np.where(cut, np.abs(b - a).sum(axis=1), 1).astype(np.int64)
    steps[~segment] = 0  # a ring's last vertex starts no edge (rings are closed again)
    k = np.arange(int(steps.sum())) - np.repeat(np.cumsum(steps) - steps, steps)
    direction = np.where(cut[:, None], np.sign(b - a), 0.0)
    points = np.repeat(a, steps, axis=0) + np.repeat(direction, steps, axis=0) * k[:, None]
    dense = shapely.linearrings(points, indices=np.repeat(vertex_ring[:-1], steps))
    polygons = np.asarray(shapely.polygons(dense, indices=ring_owner), dtype=object)
    return _group_parts(polygons, part_owner, len(geometries))


def _on_block_grid(block_px: int) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    """Edge chooser: edges that lie on a line of the block grid (where seams are)."""

    def chosen(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return ((a[:, 0] == b[:, 0]) & (a[:, 0] % block_px == 0)) | (
            (a[:, 1] == b[:, 1]) & (a[:, 1] % block_px == 0)
        )

    return chosen


def _without_vertices(
    geometries: np.ndarray, drop: Callable[[np.ndarray, np.ndarray], np.ndarray]
) -> np.ndarray:
    """The same (Multi)Polygons without the vertices ``drop(xy, collinear)`` selects.

    ``collinear`` marks vertices inside a straight edge (its two edges parallel, or one
    empty): exact in pixel coordinates. Only such vertices may be dropped. Vectorized over
    all rings at once.
    """
    if not len(geometries):
        return geometries
    parts, part_owner = shapely.get_parts(geometries, return_index=True)
    rings, ring_owner = shapely.get_rings(parts, return_index=True)  # shell first
    xy, vertex_ring = shapely.get_coordinates(rings, return_index=True)
    ring_len = np.bincount(vertex_ring, minlength=len(rings))
    closing = np.cumsum(ring_len) - 1
    open_xy = np.delete(xy, closing, axis=0)
    open_ring = np.delete(vertex_ring, closing)
    n_open = ring_len - 1
    start = np.concatenate(([0], np.cumsum(n_open)[:-1]))
    first, size = start[open_ring], n_open[open_ring]
    position = np.arange(len(open_xy)) - first
    before = open_xy[first + (position - 1) % size]
    after = open_xy[first + (position + 1) % size]
    d_in, d_out = open_xy - before, after - open_xy
    collinear = d_in[:, 0] * d_out[:, 1] - d_in[:, 1] * d_out[:, 0] == 0
    keep = ~(collinear & drop(open_xy, collinear))
    cleaned = shapely.linearrings(open_xy[keep], indices=open_ring[keep])
    polygons = np.asarray(shapely.polygons(cleaned, indices=ring_owner), dtype=object)
    return _group_parts(polygons, part_owner, len(geometries))


def _drop_collinear(geometries: np.ndarray) -> np.ndarray:
    """Without the vertices inside straight edges: those a union leaves where seams were.

    A single GDAL pass never emits them, so merged rings become the rings it traces.
    """
    return _without_vertices(geometries, lambda xy, collinear: collinear)


@dataclass(frozen=True, eq=False)
class _SeamNodes:
    """Where region boundaries meet each seam, from either side (sorted keys).

    Vertical seam ``x = c * block`` at row ``y``: key ``c * (height + 1) + y``; horizontal
    seam ``y = r * block`` at column ``x``: key ``r * (width + 1) + x``. Block corners count.
    """

    vertical: np.ndarray
    horizontal: np.ndarray


def _seam_nodes(grid: BlockGrid, edges: Sequence[_Edges]) -> _SeamNodes:
    """Node positions on every seam: where the labels change along either side of it."""
    b, h, w = grid.block_px, grid.height_px, grid.width_px
    vertical: list[np.ndarray] = []
    for c in range(1, grid.n_cols):
        for r in range(grid.n_rows):
            left = edges[grid.block(r, c - 1).index].labels[_RIGHT]
            right = edges[grid.block(r, c).index].labels[_LEFT]
            change = np.flatnonzero((left[1:] != left[:-1]) | (right[1:] != right[:-1])) + 1
            rows = np.concatenate(([0, len(left)], change)) + r * b
            vertical.append(c * (h + 1) + rows)
    horizontal: list[np.ndarray] = []
    for r in range(1, grid.n_rows):
        for c in range(grid.n_cols):
            above = edges[grid.block(r - 1, c).index].labels[_BOTTOM]
            below = edges[grid.block(r, c).index].labels[_TOP]
            change = np.flatnonzero((above[1:] != above[:-1]) | (below[1:] != below[:-1])) + 1
            cols = np.concatenate(([0, len(above)], change)) + c * b
            horizontal.append(r * (w + 1) + cols)
    empty = np.empty(0, dtype=np.int64)
    return _SeamNodes(
        np.unique(np.concatenate(vertical or [empty])).astype(np.int64),
        np.unique(np.concatenate(horizontal or [empty])).astype(np.int64),
    )


def _seam_vertices_at_nodes(geometries: np.ndarray, job: _Job, nodes: _SeamNodes) -> np.ndarray:
    """Simplified regions along seams: one vertex at every node, none in between.

    Both regions along a seam stretch then have the same vertices (a valid coverage), and
    the pixel-by-pixel vertices the merge needed are gone.
    """
    b, h, w = job.block_px, job.height_px, job.width_px
    geometries = _cut_at_pixels(geometries, _on_block_grid(b))

    def drop(xy: np.ndarray, collinear: np.ndarray) -> np.ndarray:
        x, y = xy[:, 0], xy[:, 1]
        integral = (x == np.floor(x)) & (y == np.floor(y))
        on_vertical = integral & (x % b == 0) & (x > 0) & (x < w)
        on_horizontal = integral & (y % b == 0) & (y > 0) & (y < h)
        key_v = (x // b).astype(np.int64) * (h + 1) + y.astype(np.int64)
        key_h = (y // b).astype(np.int64) * (w + 1) + x.astype(np.int64)
        node = (on_vertical & np.isin(key_v, nodes.vertical)) | (
            on_horizontal & np.isin(key_h, nodes.horizontal)
        )
        return (on_vertical | on_horizontal) & ~node

    return _without_vertices(geometries, drop)


def _union_group(geometries: np.ndarray, job: _Job) -> shapely.Geometry:
    """One region from its pieces: coverage union where exact, else an overlay union.

    8-connected pieces can meet at single corner points, which a coverage union would turn
    into self-touching rings: those take GEOS's overlay union. A coverage union whose area
    differs from its pieces' (it never should) falls back to it too.
    """
    if job.connectivity == Connectivity.FOUR:
        merged = shapely.coverage_union_all(
            _cut_at_pixels(geometries, _on_block_grid(job.block_px))
        )
        if shapely.get_type_id(merged) == shapely.GeometryType.POLYGON and math.isclose(
            shapely.area(merged), shapely.area(geometries).sum(), rel_tol=1e-9
        ):
            return merged
    return shapely.union_all(geometries)


def _merge_pieces(
    job: _Job, nodes: _SeamNodes | None, group_of: np.ndarray, n_groups: int, *selections: _Pieces
) -> _Features:
    """Worker task: union the pieces of each group (one region each) and finish them.

    Unions are exact (integer pixel coordinates); `_drop_collinear` then removes the vertices
    the seams left, giving the rings a single pass traces. Simplified regions instead get a
    vertex at each seam node (`_seam_vertices_at_nodes`): their neighbours across the seam
    need the same vertices.
    """
    pieces = _Pieces.concat(selections)
    order = np.argsort(group_of, kind="stable")
    counts = np.bincount(group_of, minlength=n_groups)
    starts = np.concatenate(([0], np.cumsum(counts)[:-1]))
    geometry = pieces.geometry[order[starts]].copy()
    several = np.flatnonzero(counts > 1)
    for g in several:
        geometry[g] = _union_group(pieces.geometry[order[starts[g] : starts[g] + counts[g]]], job)
    if job.simplify_px == 0:
        geometry[several] = _drop_collinear(geometry[several])
    elif nodes is not None:
        geometry = _seam_vertices_at_nodes(geometry, job, nodes)
    if job.connectivity == Connectivity.FOUR and len(geometry):
        types = shapely.get_type_id(geometry)
        if not np.all(types == shapely.GeometryType.POLYGON):
            raise RuntimeError("seam merge: a 4-connected region did not merge into one polygon")

    def total(values: np.ndarray) -> np.ndarray:
        return np.bincount(group_of, weights=values, minlength=n_groups)

    merged = _Pieces(
        geometry=geometry,
        class_id=pieces.class_id[order[starts]],
        pixel_count=np.rint(total(pieces.pixel_count)).astype(np.int64),
        confidence_sum=total(pieces.confidence_sum),
        confidence_count=np.rint(total(pieces.confidence_count)).astype(np.int64),
    )
    return _finish(job, merged)


# --------------------------------------------------------------------------- sieve
#
# GDAL's sieve (gdalsievefilter.cpp), restated: every region with fewer than T pixels takes
# the class of the first region of >= T pixels reached by following "largest neighbour"
# links (region -> its neighbour with the most pixels; among equal sizes, the neighbour met
# first when the raster is scanned row by row, comparing each pixel with its up, up-left,
# up-right (8-connectivity) and left neighbours in that order). A chain that runs into a
# region without neighbours or into a cycle leaves the region as it is. Nodata is neither a
# region nor a neighbour.
#
# Block-wise: (1) census -- each block labels its regions; seam pieces are joined into global
# regions exactly as for polygons, giving every region its global size. (2) candidates -- each
# block finds the largest neighbour of its small regions from its own pixel pairs (complete
# for regions inside the block); for small seam regions it reports its best candidate, and
# the client adds the pairs across seams, so their choice is also exact; chains inside a
# block are followed by pointer jumping and reported where a seam region points into them.
# (3) the client follows the chains between seam regions; each block then applies the same
# decisions to its pixels before polygonizing. The result equals sieving the whole raster.


@dataclass(frozen=True, eq=False)
class _Census:
    n_labels: int
    edges: _Edges
    seam_ids: np.ndarray
    seam_size: np.ndarray
    seam_class: np.ndarray


@dataclass(frozen=True, eq=False)
class _SievePlan:
    """What one block needs to sieve itself as the whole raster would be sieved.

    Region ids: seam regions are numbered 0..G-1 globally, the block's other regions
    ``gid_base + label - 1``. ``seam_value`` (per seam label, -1 = unchanged) is known only
    in the last phase.
    """

    threshold_px: int
    gid_base: int
    seam_ids: np.ndarray
    seam_gid: np.ndarray
    seam_size: np.ndarray
    seam_value: np.ndarray | None = None


@dataclass(frozen=True, eq=False)
class _Candidates:
    """A block's best-neighbour candidates for small seam regions, and chain ends.

    ``res_*``: for small inside regions that are such a candidate, where their chain inside
    the block ends: kind 0 = unchanged, 1 = class ``value``, 2 = seam region ``value``.
    """

    src: np.ndarray
    tgt: np.ndarray
    tgt_size: np.ndarray
    time: np.ndarray
    tgt_class: np.ndarray
    res_gid: np.ndarray
    res_kind: np.ndarray
    res_value: np.ndarray


@dataclass(frozen=True, eq=False)
class _Regions:
    """A block's regions for the sieve: per label (index 0 = nodata) gid, size, class."""

    labels: np.ndarray
    gid: np.ndarray
    size: np.ndarray
    klass: np.ndarray
    is_seam: np.ndarray


def _sieve_census(job: _Job, block: Block) -> _Census:
    """Worker task, sieve phase 1: regions of a block, sizes of those on its seams."""
    classes = _read_block(job, block)
    labels, component_class = label_components(classes, connectivity=job.connectivity)
    sizes = np.bincount(labels.ravel(), minlength=len(component_class) + 1)
    strips = _label_strips(labels)
    seam_ids = _seam_labels(strips, block)
    return _Census(
        n_labels=len(component_class),
        edges=_edges_of(strips, classes),
        seam_ids=seam_ids,
        seam_size=sizes[seam_ids].astype(np.int64),
        seam_class=component_class[seam_ids - 1].astype(np.int64),
    )


def _sieve_regions(job: _Job, block: Block, classes: np.ndarray, plan: _SievePlan) -> _Regions:
    labels, component_class = label_components(classes, connectivity=job.connectivity)
    if not np.array_equal(_seam_labels(_label_strips(labels), block), plan.seam_ids):
        raise SceneError(
            f"{job.classes_path}: the class raster changed while it was being vectorized; "
            "run again on a file that is not being written"
        )
    n = len(component_class)
    gid = plan.gid_base + np.arange(n + 1, dtype=np.int64) - 1
    gid[0] = -1
    size = np.bincount(labels.ravel(), minlength=n + 1).astype(np.int64)
    size[0] = 0
    gid[plan.seam_ids] = plan.seam_gid
    size[plan.seam_ids] = plan.seam_size
    is_seam = np.zeros(n + 1, dtype=bool)
    is_seam[plan.seam_ids] = True
    klass = np.concatenate(([CLASS_NODATA], component_class)).astype(np.int64)
    return _Regions(labels, gid, size, klass, is_seam)


def _block_pairs(
    labels: np.ndarray, block: Block, width_px: int, connectivity: Connectivity
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Adjacent pixels of different regions inside a block: (this, other, GDAL time)."""
    rows = np.arange(block.row_off, block.row_off + block.height, dtype=np.int64)
    cols = np.arange(block.col_off, block.col_off + block.width, dtype=np.int64)
    views = [  # (this pixels, other pixels, their rows, their cols, k)
        (labels[1:, :], labels[:-1, :], rows[1:], cols, 0),
        (labels[:, 1:], labels[:, :-1], rows, cols[1:], 3),
    ]
    if connectivity == Connectivity.EIGHT:
        views += [
            (labels[1:, 1:], labels[:-1, :-1], rows[1:], cols[1:], 1),
            (labels[1:, :-1], labels[:-1, 1:], rows[1:], cols[:-1], 2),
        ]
    this, other, time = [], [], []
    for a, b, r, c, k in views:
        rr, cc = np.nonzero((a != b) & (a > 0) & (b > 0))
        this.append(a[rr, cc])
        other.append(b[rr, cc])
        time.append((r[rr] * width_px + c[cc]) * 4 + k)
    return np.concatenate(this), np.concatenate(other), np.concatenate(time)


def _best_neighbours(
    job: _Job, block: Block, regions: _Regions, threshold_px: int
) -> tuple[np.ndarray, np.ndarray]:
    """Per label: the label of its largest neighbour in the block (0 = none), and the time.

    Only small regions get one. Labels of one global region are never neighbours.
    """
    this, other, time = _block_pairs(regions.labels, block, job.width_px, job.connectivity)
    src = np.concatenate((this, other))
    tgt = np.concatenate((other, this))
    time = np.concatenate((time, time))
    keep = (regions.gid[src] != regions.gid[tgt]) & (regions.size[src] < threshold_px)
    src, tgt, time = src[keep], tgt[keep], time[keep]
    best = np.zeros(len(regions.gid), dtype=np.int64)
    best_time = np.zeros(len(regions.gid), dtype=np.int64)
    if len(src):
        order = np.lexsort((time, -regions.size[tgt], src))
        first = order[np.concatenate(([True], src[order][1:] != src[order][:-1]))]
        best[src[first]] = tgt[first]
        best_time[src[first]] = time[first]
    return best, best_time


def _follow_chains(regions: _Regions, best: np.ndarray, threshold_px: int) -> np.ndarray:
    """Where each label's chain of largest neighbours ends inside the block (pointer jumping).

    Large regions and small seam regions end chains (the rest of a seam region's chain is
    decided globally); 0 means "no neighbour"; a label that ends on a small inside region
    ran into a cycle.
    """
    n = len(best)
    nxt = np.arange(n, dtype=np.int64)
    inside_small = (regions.size < threshold_px) & ~regions.is_seam
    inside_small[0] = False
    nxt[inside_small] = best[inside_small]
    for _ in range(max(1, int(n).bit_length() + 1)):
        jumped = nxt[nxt]
        if np.array_equal(jumped, nxt):
            break
        nxt = jumped
    return nxt


def _sieve_candidates(job: _Job, block: Block, plan: _SievePlan) -> _Candidates:
    """Worker task, sieve phase 2: candidates for small seam regions, and chain ends."""
    regions = _sieve_regions(job, block, _read_block(job, block), plan)
    threshold = plan.threshold_px
    best, best_time = _best_neighbours(job, block, regions, threshold)
    src = np.flatnonzero(regions.is_seam & (regions.size < threshold) & (best > 0))
    tgt = best[src]
    inside_small_tgt = np.unique(tgt[~regions.is_seam[tgt] & (regions.size[tgt] < threshold)])
    end = _follow_chains(regions, best, threshold)[inside_small_tgt]
    kind = np.zeros(len(end), dtype=np.int64)
    value = np.zeros(len(end), dtype=np.int64)
    large = (end > 0) & (regions.size[end] >= threshold)
    exits = (end > 0) & ~large & regions.is_seam[end]
    kind[large], value[large] = 1, regions.klass[end[large]]
    kind[exits], value[exits] = 2, regions.gid[end[exits]]
    return _Candidates(
        src=regions.gid[src],
        tgt=regions.gid[tgt],
        tgt_size=regions.size[tgt],
        time=best_time[src],
        tgt_class=regions.klass[tgt],
        res_gid=regions.gid[inside_small_tgt],
        res_kind=kind,
        res_value=value,
    )


def _resolve_seam_regions(
    threshold_px: int,
    group_size: np.ndarray,
    group_class: np.ndarray,
    candidates: Sequence[_Candidates],
    cross: tuple[np.ndarray, np.ndarray, np.ndarray],
) -> np.ndarray:
    """New class of every seam region (-1 = unchanged), following chains across blocks.

    ``cross``: (region a, region b, time) of the pixel pairs across seams.
    """
    n_groups = len(group_size)
    ga, gb, cross_time = cross
    differ = ga != gb
    ga, gb, cross_time = ga[differ], gb[differ], cross_time[differ]
    src = np.concatenate([c.src for c in candidates] + [ga, gb])
    tgt = np.concatenate([c.tgt for c in candidates] + [gb, ga])
    size = np.concatenate([c.tgt_size for c in candidates] + [group_size[gb], group_size[ga]])
    time = np.concatenate([c.time for c in candidates] + [cross_time, cross_time])
    klass = np.concatenate([c.tgt_class for c in candidates] + [group_class[gb], group_class[ga]])
    small = group_size < threshold_px
    keep = small[src]
    src, tgt, size, time, klass = src[keep], tgt[keep], size[keep], time[keep], klass[keep]

    # Nodes: seam regions 0..G-1, "unchanged" G, "class v" G + 1 + v (terminals loop on
    # themselves, as do large seam regions, which are never a chain's source).
    unchanged = n_groups
    nxt = np.arange(n_groups + 1 + 256, dtype=np.int64)
    nxt[:n_groups][small] = unchanged
    if len(src):
        order = np.lexsort((time, -size, src))
        first = order[np.concatenate(([True], src[order][1:] != src[order][:-1]))]
        src, tgt, size, klass = src[first], tgt[first], size[first], klass[first]
        target = np.full(len(src), unchanged, dtype=np.int64)
        is_seam = tgt < n_groups
        large = size >= threshold_px
        target[is_seam & ~large] = tgt[is_seam & ~large]
        target[large] = n_groups + 1 + klass[large]
        inside_small = ~is_seam & ~large
        if inside_small.any():
            res_gid = np.concatenate([c.res_gid for c in candidates])
            res_kind = np.concatenate([c.res_kind for c in candidates])
            res_value = np.concatenate([c.res_value for c in candidates])
            order_res = np.argsort(res_gid)
            at = order_res[np.searchsorted(res_gid[order_res], tgt[inside_small])]
            kind, value = res_kind[at], res_value[at]
            resolved = np.where(
                kind == 1, n_groups + 1 + value, np.where(kind == 2, value, unchanged)
            )
            target[inside_small] = resolved
        nxt[src] = target
    for _ in range(max(1, len(nxt).bit_length() + 1)):
        jumped = nxt[nxt]
        if np.array_equal(jumped, nxt):
            break
        nxt = jumped
    end = nxt[:n_groups]
    value = np.where(end > n_groups, end - n_groups - 1, _NO_VALUE)
    return np.where(small, value, _NO_VALUE)


def _sieve_block(job: _Job, block: Block, classes: np.ndarray, plan: _SievePlan) -> np.ndarray:
    """Sieve phase 3: this block's pixels as the whole-raster sieve would leave them."""
    if plan.seam_value is None:
        raise RuntimeError("sieve: the plan has no decisions for the seam regions yet")
    regions = _sieve_regions(job, block, classes, plan)
    threshold = plan.threshold_px
    best, _ = _best_neighbours(job, block, regions, threshold)
    end = _follow_chains(regions, best, threshold)
    new = np.full(len(best), _NO_VALUE, dtype=np.int64)
    new[plan.seam_ids] = plan.seam_value
    inside_small = (regions.size < threshold) & ~regions.is_seam
    inside_small[0] = False
    end_small = end[inside_small]
    large = (end_small > 0) & (regions.size[end_small] >= threshold)
    exits = (end_small > 0) & ~large & regions.is_seam[end_small]
    decided = np.full(len(end_small), _NO_VALUE, dtype=np.int64)
    decided[large] = regions.klass[end_small[large]]
    decided[exits] = new[end_small[exits]]
    new[inside_small] = decided
    lut = np.where(new >= 0, new, regions.klass).astype(np.uint8)
    return np.where(regions.labels > 0, lut[regions.labels], classes)


def _gather(executor: _Executor, tasks: Sequence[Any]) -> list[Any]:
    results: list[Any] = [None] * len(tasks)
    for i, value in executor.as_completed(tasks):
        results[i] = value
    return results


def _plan_sieve(job: _Job, grid: BlockGrid, executor: _Executor) -> list[_SievePlan]:
    """Run sieve phases 1 and 2 on the blocks; return each block's phase-3 plan."""
    blocks = grid.blocks()
    census: list[_Census] = _gather(
        executor, [executor.submit(_sieve_census, job, b) for b in blocks]
    )
    index = _SeamIndex.build([c.seam_ids for c in census])
    pairs = _cross_pairs(grid, [c.edges for c in census], job.connectivity)
    group_of, n_groups = _seam_groups(pairs, index)
    group_size = np.bincount(
        group_of, weights=np.concatenate([c.seam_size for c in census]), minlength=n_groups
    )
    group_size = np.rint(group_size).astype(np.int64)
    group_class = np.zeros(n_groups, dtype=np.int64)
    group_class[group_of] = np.concatenate([c.seam_class for c in census])
    label_base = np.concatenate(([0], np.cumsum([c.n_labels for c in census])))
    plans = []
    for b, c in zip(blocks, census, strict=True):
        seam_gid = group_of[index.offsets[b.index] : index.offsets[b.index + 1]]
        plans.append(
            _SievePlan(
                threshold_px=job.sieve_px,
                gid_base=n_groups + int(label_base[b.index]),
                seam_ids=c.seam_ids,
                seam_gid=seam_gid,
                seam_size=group_size[seam_gid],
            )
        )
    candidates: list[_Candidates] = _gather(
        executor,
        [executor.submit(_sieve_candidates, job, b, p) for b, p in zip(blocks, plans, strict=True)],
    )
    cross = (
        group_of[index.find(pairs.block_a, pairs.label_a)],
        group_of[index.find(pairs.block_b, pairs.label_b)],
        pairs.time,
    )
    value = _resolve_seam_regions(job.sieve_px, group_size, group_class, candidates, cross)
    return [replace(p, seam_value=value[p.seam_gid]) for p in plans]


# --------------------------------------------------------------------------- executors


class _Executor(Protocol):
    """Where block tasks run: this process (`_LocalExecutor`) or Dask (`_DaskExecutor`)."""

    def submit(self, fn: Callable[..., Any], *args: Any) -> Any: ...

    def as_completed(self, tasks: Sequence[Any]) -> Iterator[tuple[int, Any]]: ...

    def settle(self, task: Any) -> None: ...

    def release(self, task: Any) -> None: ...


class _LocalTask:
    """A lazily computed call; its value is kept until released."""

    def __init__(self, fn: Callable[..., Any], args: tuple[Any, ...]) -> None:
        self._fn: Callable[..., Any] | None = fn
        self._args: tuple[Any, ...] = args
        self._value: Any = None
        self._state = "pending"

    def result(self) -> Any:
        if self._state == "released":
            raise RuntimeError("local executor: a released task was asked for its value")
        if self._state == "pending" and self._fn is not None:
            args = [a.result() if isinstance(a, _LocalTask) else a for a in self._args]
            self._value = self._fn(*args)
            self._fn, self._args, self._state = None, (), "done"
        return self._value

    def release(self) -> None:
        self._value, self._state = None, "released"


class _LocalExecutor:
    """Runs block tasks in this process, one after another, when their results are needed."""

    def submit(self, fn: Callable[..., Any], *args: Any) -> _LocalTask:
        return _LocalTask(fn, args)

    def as_completed(self, tasks: Sequence[_LocalTask]) -> Iterator[tuple[int, Any]]:
        for i, task in enumerate(tasks):
            yield i, task.result()

    def settle(self, task: _LocalTask) -> None:
        task.result()

    def release(self, task: _LocalTask) -> None:
        task.release()


class _DaskExecutor:
    """Runs block tasks on a dask.distributed cluster; results stay there until fetched."""

    def __init__(self, client: Client) -> None:
        self._client = client
        self._futures: list[Any] = []

    def submit(self, fn: Callable[..., Any], *args: Any) -> Any:
        future = self._client.submit(fn, *args, pure=False)
        self._futures.append(future)
        return future

    def as_completed(self, tasks: Sequence[Any]) -> Iterator[tuple[int, Any]]:
        from distributed import as_completed

        position = {f.key: i for i, f in enumerate(tasks)}
        for future, value in as_completed(tasks, with_results=True):
            yield position[future.key], value

    def settle(self, task: Any) -> None:
        pass  # the block result is kept on its worker until the seam pieces are extracted

    def release(self, task: Any) -> None:
        task.release()

    def cancel_all(self) -> None:
        self._client.cancel([f for f in self._futures if not f.done()])
        self._futures.clear()


def default_workers() -> int:
    """Worker processes of a default LocalCluster: one per available CPU core, at most 8."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return max(1, min(cores, _MAX_DEFAULT_WORKERS))


@contextlib.contextmanager
def _quiet_distributed() -> Iterator[None]:
    """distributed logs dozens of INFO lines per cluster; keep only warnings meanwhile."""
    logger = logging.getLogger("distributed")
    level = logger.level
    logger.setLevel(max(level, logging.WARNING))
    try:
        yield
    finally:
        logger.setLevel(level)


@contextlib.contextmanager
def dask_client(*, workers: int | None = None, address: str | None = None) -> Iterator[Client]:
    """A dask.distributed client for the duration of the ``with`` block.

    With ``address``: connected to that running scheduler (left running on exit). Otherwise a
    LocalCluster of ``workers`` processes (default `default_workers`), one thread each, no
    dashboard and geoseg already imported, started here and shut down on exit. distributed's
    logging is lowered to warnings meanwhile.
    """
    from distributed import Client, LocalCluster

    with _quiet_distributed():
        if address:
            try:
                client = Client(address, timeout=DASK_CONNECT_TIMEOUT_S)
            except (OSError, TimeoutError, ValueError) as exc:
                raise ConfigError(
                    f"--dask-address {address}: no Dask scheduler answered ({exc}); start one "
                    "(dask scheduler) and its workers, or leave the option out to use a local "
                    "cluster"
                ) from None
            with client:
                yield client
            return
        n_workers = default_workers() if workers is None else workers
        if n_workers < 1:
            raise ConfigError("--workers: a local Dask cluster needs at least one worker")
        with (
            LocalCluster(
                n_workers=n_workers,
                threads_per_worker=1,
                processes=True,
                dashboard_address=None,
                # no dashboard; its HTTP server on any free port, not 8787 (maybe taken)
                scheduler_kwargs={"dashboard": False, "dashboard_address": "127.0.0.1:0"},
                silence_logs=logging.WARNING,
                preload=["geoseg.vectorize"],  # imported while the workers start
            ) as cluster,
            Client(cluster) as client,
        ):
            yield client


class SharedClient:
    """One Dask client for several `vectorize_raster` calls, started on first need.

    A run over many scenes starts its LocalCluster (a few seconds) once, and not at all when
    every class raster fits in one block. Use as a context manager: the cluster it started
    is shut down on exit.
    """

    def __init__(self, *, workers: int | None = None, address: str | None = None) -> None:
        self._workers, self._address = workers, address
        self._stack = contextlib.ExitStack()
        self._client: Client | None = None

    def get(self) -> Client:
        if self._client is None:
            self._client = self._stack.enter_context(
                dask_client(workers=self._workers, address=self._address)
            )
        return self._client

    def __enter__(self) -> SharedClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self._client = None
        self._stack.close()


@contextlib.contextmanager
def _executor_for(
    grid: BlockGrid, options: VectorizeOptions, client: Client | SharedClient | None
) -> Iterator[tuple[_Executor, int]]:
    """The executor for a raster and the number of Dask workers behind it (0 = none)."""
    local = len(grid) == 1 or (
        client is None and options.dask_address is None and options.workers == 0
    )
    if local:
        yield _LocalExecutor(), 0
        return
    if isinstance(client, SharedClient):
        client = client.get()
    if client is not None:
        yield _DaskExecutor(client), len(client.nthreads())
        return
    with dask_client(workers=options.workers, address=options.dask_address) as started:
        yield _DaskExecutor(started), len(started.nthreads())


def _run_blocks(
    job: _Job,
    grid: BlockGrid,
    executor: _Executor,
    sink: Callable[[_Features], None],
    *,
    on_block: Callable[[int, int], None],
    parallelism: int = 1,
) -> None:
    """Polygonize every block, stream finished regions to ``sink``, then merge the seams."""
    plans: Sequence[_SievePlan | None] = (
        _plan_sieve(job, grid, executor) if job.sieve_px > 1 else [None] * len(grid)
    )
    outs, fronts, seams = [], [], []
    for block, plan in zip(grid.blocks(), plans, strict=True):
        out = executor.submit(_polygonize_block, job, block, plan)
        outs.append(out)
        fronts.append(executor.submit(_front_of, out))
        seams.append(executor.submit(_seams_of, out))
    edges: list[_Edges] = [None] * len(grid)  # type: ignore[list-item]
    seam_ids: list[np.ndarray] = [None] * len(grid)  # type: ignore[list-item]
    for done, (i, (features, block_edges, ids)) in enumerate(executor.as_completed(fronts), 1):
        sink(features)
        edges[i], seam_ids[i] = block_edges, ids
        executor.settle(seams[i])
        executor.release(outs[i])
        executor.release(fronts[i])
        on_block(done, len(grid))

    index = _SeamIndex.build(seam_ids)
    group_of, _ = _seam_groups(_cross_pairs(grid, edges, job.connectivity), index)
    nodes = _seam_nodes(grid, edges) if job.simplify_px > 0 else None
    merges = []
    per_task = min(MERGE_BATCH_PIECES, -(-len(group_of) // (2 * max(1, parallelism))))
    for batch in _merge_batches(group_of, per_task):
        block_of = index.block_of(batch)
        order = np.argsort(block_of, kind="stable")
        batch, block_of = batch[order], block_of[order]
        selections = [
            executor.submit(_take_pieces, seams[k], batch[block_of == k] - index.offsets[k])
            for k in np.unique(block_of)
        ]
        _, local_group = np.unique(group_of[batch], return_inverse=True)
        n_local = int(local_group.max()) + 1
        merges.append(executor.submit(_merge_pieces, job, nodes, local_group, n_local, *selections))
    for _, features in executor.as_completed(merges):
        sink(features)
    for task in seams:
        executor.release(task)


# --------------------------------------------------------------------------- file stage


@dataclass(frozen=True)
class _RasterInfo:
    shape: tuple[int, int]
    transform: Affine
    crs: pyproj.CRS


def _inspect_class_raster(path: Path) -> _RasterInfo:
    """Size, grid and CRS of a class raster; refuse what cannot be vectorized."""
    try:
        with rasterio.open(path) as src:
            if src.crs is None:
                raise SceneError(
                    f"{path}: the class raster has no CRS, so polygons cannot be placed on a "
                    "map; assign one (gdal_edit.py -a_srs EPSG:<code>) or predict from a "
                    "georeferenced scene"
                )
            if not np.issubdtype(np.dtype(src.dtypes[0]), np.integer):
                raise SceneError(
                    f"{path}: band 1 is {src.dtypes[0]}, not a class raster; vectorize the "
                    "uint8 classes.tif written by prediction"
                )
            return _RasterInfo(
                (src.height, src.width), src.transform, pyproj.CRS.from_wkt(src.crs.to_wkt())
            )
    except rasterio.errors.RasterioError as exc:
        raise _open_error(path, exc) from exc


def _check_confidence_grid(path: Path, raster: _RasterInfo) -> None:
    try:
        with rasterio.open(path) as src:
            shape, transform = (src.height, src.width), src.transform
    except rasterio.errors.RasterioError as exc:
        raise _open_error(path, exc) from exc
    if shape != raster.shape or not transform.almost_equals(raster.transform):
        raise SceneError(
            f"{path}: the confidence raster's grid ({shape[0]}x{shape[1]}, "
            f"{tuple(transform)[:6]}) differs from the class raster's ({raster.shape[0]}x"
            f"{raster.shape[1]}, {tuple(raster.transform)[:6]}); pass the confidence.tif of the "
            "same prediction"
        )


def pixel_area_m2(raster_transform: Affine, crs: pyproj.CRS, shape: tuple[int, int]) -> float:
    """Area of one pixel in m²: exact for a projected CRS, the centre pixel's if geographic."""
    row, col = shape[0] // 2, shape[1] // 2
    pixel = shapely.box(col, row, col + 1, row + 1)
    area, _ = measure_m(pixel_to_map(np.array([pixel], dtype=object), raster_transform), crs)
    return float(area[0])


def sieve_threshold_px(min_area_m2: float, pixel_m2: float) -> int:
    """Pixels a region needs to survive ``min_area_m2``: ceil(min_area / pixel area)."""
    if min_area_m2 <= 0 or pixel_m2 <= 0:
        return 0
    return max(0, math.ceil(min_area_m2 / pixel_m2 - 1e-9))


def _class_styles(classes: Sequence[ClassInfo], present: np.ndarray) -> tuple[ClassInfo, ...]:
    """The class list plus a grey ``class <id>`` entry for each unlisted value present."""
    known = {c.id for c in classes}
    extra = tuple(
        ClassInfo(int(v), f"class {int(v)}", UNKNOWN_CLASS_COLOR)
        for v in np.unique(present)
        if int(v) not in known
    )
    return (*classes, *extra)


class _Tally:
    """Polygons and area per class value, added up as batches are written."""

    def __init__(self) -> None:
        self.count = np.zeros(256, dtype=np.int64)
        self.area = np.zeros(256, dtype=np.float64)

    def add(self, features: _Features) -> None:
        self.count += np.bincount(features.class_id, minlength=256)
        self.area += np.bincount(features.class_id, weights=features.area_m2, minlength=256)

    @property
    def present(self) -> np.ndarray:
        return np.flatnonzero(self.count)


class _FeatureSink:
    """Finished regions -> layer rows (class names, extra columns), written in few batches.

    Batches from blocks are small; each GeoPackage append has a fixed cost and updates the
    spatial index row by row, so rows are buffered up to `WRITE_BATCH_FEATURES` (bounded
    memory) and written together. The first write creates the layer.
    """

    def __init__(
        self,
        writer: PolygonLayerWriter,
        names: np.ndarray,
        extra: Mapping[str, str],
        tally: _Tally,
    ) -> None:
        self._writer = writer
        self._names = names
        self._extra = extra
        self._tally = tally
        self._buffer: list[_Features] = []
        self._buffered = 0
        self._written = False

    def __call__(self, features: _Features) -> None:
        self._tally.add(features)
        if len(features):
            self._buffer.append(features)
            self._buffered += len(features)
        if self._buffered >= WRITE_BATCH_FEATURES:
            self.flush()

    def flush(self, *, final: bool = False) -> None:
        if not self._buffer and (self._written or not final):
            return
        features = _Features.concat(self._buffer) if self._buffer else _Features.empty()
        columns: dict[str, np.ndarray] = {
            "class_id": features.class_id,
            "class_name": self._names[features.class_id],
            "pixel_count": features.pixel_count,
            "area_m2": features.area_m2,
            "perimeter_m": features.perimeter_m,
            "mean_confidence": features.mean_confidence,
        }
        for name, value in self._extra.items():
            columns[name] = np.full(len(features), str(value), dtype=object)
        self._writer.write_wkb(features.wkb, columns)
        self._buffer, self._buffered, self._written = [], 0, True


def vectorize_raster(
    classes_path: str | os.PathLike[str],
    out_path: str | os.PathLike[str],
    *,
    classes: Sequence[ClassInfo],
    confidence_path: str | os.PathLike[str] | None = None,
    connectivity: Connectivity = Connectivity.FOUR,
    extra_attributes: Mapping[str, str] | None = None,
    layer: str = "landcover",
    options: VectorizeOptions | None = None,
    client: Client | SharedClient | None = None,
    on_block: Callable[[int, int], None] | None = None,
) -> VectorizeResult:
    """Polygonize a class raster into a styled GeoPackage layer (+ ``.qml`` beside it).

    Columns: class_id, class_name, pixel_count, area_m2, perimeter_m, mean_confidence (0..100,
    NULL without a confidence raster) and each of ``extra_attributes`` as a constant string
    column (e.g. scene, model_sha256). Class values missing from ``classes`` are kept and
    named ``class <id>`` (``classes`` may be empty). The polygons are exactly those of one
    single pass (gdal_polygonize), whatever the block size; regions inside a block come first,
    block by block as they finish, then the regions merged across seams.

    ``options`` sets block size, Dask workers or scheduler, sieve and simplification (see
    `VectorizeOptions`); ``client`` runs the blocks on an existing dask.distributed client
    instead, or on a `SharedClient` (started on first need, reused across calls). A raster
    that fits in one block is processed in this process without Dask.
    ``on_block(done, total)`` is called as blocks finish (for progress bars).
    """
    options = options or VectorizeOptions()
    if connectivity not in (Connectivity.FOUR, Connectivity.EIGHT):
        raise ConfigError(
            f"--connectivity: {connectivity} is not 4 or 8; give 4 (edges, gdal_polygonize's "
            "default) or 8 (edges and corners, its -8)"
        )
    connectivity = Connectivity(connectivity)
    classes = validate_classes(classes) if len(classes) else ()
    extra = dict(extra_attributes or {})
    clashes = sorted(set(extra) & set(BUILTIN_FIELDS))
    if clashes:
        raise ConfigError(
            f"extra attributes {clashes} would replace built-in columns; rename them "
            f"(built-in: {', '.join(BUILTIN_FIELDS)})"
        )
    classes_path = Path(classes_path)
    raster = _inspect_class_raster(classes_path)
    if confidence_path is not None:
        _check_confidence_grid(Path(confidence_path), raster)
    pixel_m2 = pixel_area_m2(raster.transform, raster.crs, raster.shape)
    job = _Job(
        classes_path=str(classes_path.resolve()),
        confidence_path=None if confidence_path is None else str(Path(confidence_path).resolve()),
        height_px=raster.shape[0],
        width_px=raster.shape[1],
        transform=raster.transform,
        crs_wkt=raster.crs.to_wkt(),
        connectivity=connectivity,
        block_px=options.block_size_px,
        sieve_px=sieve_threshold_px(options.min_area_m2, pixel_m2),
        simplify_px=options.simplify_m / math.sqrt(pixel_m2) if options.simplify_m else 0.0,
    )
    grid = BlockGrid(raster.shape[0], raster.shape[1], options.block_size_px)
    names = np.array([f"class {i}" for i in range(256)], dtype=object)
    for c in classes:
        names[c.id] = c.name
    tally = _Tally()
    # One layer type per connectivity, whatever the data: corner-joined 8-connected regions
    # are MultiPolygons, so every 8-connected feature is written as one.
    geometry_type = (
        LayerGeometry.MULTIPOLYGON if connectivity == Connectivity.EIGHT else LayerGeometry.POLYGON
    )
    with PolygonLayerWriter(
        out_path, crs=job.crs_wkt, geometry_type=geometry_type, layer=layer
    ) as writer:
        sink = _FeatureSink(writer, names, extra, tally)
        with _executor_for(grid, options, client) as (executor, n_workers):
            try:
                _run_blocks(
                    job,
                    grid,
                    executor,
                    sink,
                    on_block=on_block or (lambda done, total: None),
                    parallelism=n_workers,
                )
            except BaseException:
                if isinstance(executor, _DaskExecutor):
                    executor.cancel_all()
                raise
        sink.flush(final=True)
        styles = _class_styles(classes, tally.present)
        path = writer.commit(styles)
    polygons_per_class = {c.id: int(tally.count[c.id]) for c in styles}
    area_per_class = {c.id: float(tally.area[c.id]) for c in styles}
    return VectorizeResult(
        path=path,
        n_polygons=int(tally.count.sum()),
        polygons_per_class=polygons_per_class,
        area_m2_per_class=area_per_class,
        blocks=len(grid),
        dask_workers=n_workers,
        class_names={c.id: c.name for c in styles},
    )


def vectorize_file(
    classes_path: str | os.PathLike[str],
    out_path: str | os.PathLike[str],
    *,
    confidence_path: str | os.PathLike[str] | None = None,
    model_path: str | os.PathLike[str] | None = None,
    connectivity: int = Connectivity.FOUR,
    options: VectorizeOptions | None = None,
    client: Client | SharedClient | None = None,
    on_block: Callable[[int, int], None] | None = None,
) -> VectorizeResult:
    """`geoseg vectorize`: any class raster to a styled GeoPackage.

    Classes (names, colours) come from the model package if given -- which also adds a
    ``model_sha256`` column -- else from the raster itself (`classes_for_raster`). A
    ``scene`` column holds `raster_scene_name`.
    """
    extra = {"scene": raster_scene_name(classes_path)}
    if model_path is not None:
        from geoseg.package import load_package

        package = load_package(model_path)
        classes: Sequence[ClassInfo] = package.metadata.class_infos()
        extra["model_sha256"] = package.sha256
    else:
        classes = classes_for_raster(classes_path)
    return vectorize_raster(
        classes_path,
        out_path,
        classes=classes,
        confidence_path=confidence_path,
        connectivity=connectivity,
        extra_attributes=extra,
        options=options,
        client=client,
        on_block=on_block,
    )


# --------------------------------------------------------------------------- class lists


def classes_for_raster(path: str | os.PathLike[str]) -> tuple[ClassInfo, ...]:
    """Class names and colours stored with a class raster, for vectorizing it alone.

    In order: the GEOSEG_CLASSES tag geoseg writes; else the colour table, with names from
    GDAL category names (``<file>.aux.xml``) or ``class <id>`` (entries still at GDAL's
    default opaque black are skipped: they are unused slots); else nothing (every value found
    is then named ``class <id>``).
    """
    from geoseg.io.raster import classes_from_tags

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
        raise _open_error(path, exc) from exc
    names = _category_names(path)
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


def _category_names(path: Path) -> dict[int, str]:
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
