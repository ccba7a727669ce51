"""One block of a class raster: what every block task shares, reads and hands back.

`BlockJob` is the small picklable job; a task reads its block (`read_block`), reports the
region labels along the block's edges (`BlockEdges`) and its regions as `RegionPieces`;
`finish_regions` turns complete regions into layer rows (`FeatureBatch`) in the raster's CRS.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields
from functools import lru_cache
from pathlib import Path

import numpy as np
import pyproj
import rasterio
import rasterio.errors
import rasterio.features
import shapely
from affine import Affine
from scipy import ndimage

from geoseg.classes import CLASS_NODATA
from geoseg.errors import SceneError
from geoseg.geo.grid import Block
from geoseg.geo.scene import map_xy, measure_m
from geoseg.io.raster import unreadable_raster
from geoseg.io.vector import as_multipolygons
from geoseg.vectorize.geometry import cut_at_pixels, repair_if_invalid
from geoseg.vectorize.options import DEFAULT_BLOCK_PX, Connectivity
from geoseg.vectorize.polygonize import mean_or_nan, polygonize_labels

TOP, BOTTOM, LEFT, RIGHT = range(4)
"""Positions of a block's four edges in `EdgeStrips`."""

EdgeStrips = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]
"""Values along a block's top, bottom, left and right edges."""


@dataclass(frozen=True)
class BlockJob:
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
    source_path: str | None = None
    n_sources: int = 0


@dataclass(frozen=True, eq=False)
class BlockEdges:
    """Region labels and class values along a block's top, bottom, left and right edges."""

    labels: EdgeStrips
    classes: EdgeStrips


@dataclass(frozen=True, eq=False)
class RegionPieces:
    """Regions (or pieces of regions) in pixel coordinates with their additive numbers."""

    geometry: np.ndarray
    class_id: np.ndarray
    pixel_count: np.ndarray
    confidence_sum: np.ndarray
    confidence_count: np.ndarray
    source_counts: np.ndarray
    """(pieces, sources) pixels of each piece per source index (0 columns without sources)."""

    _FIELDS = (
        "geometry",
        "class_id",
        "pixel_count",
        "confidence_sum",
        "confidence_count",
        "source_counts",
    )

    def __len__(self) -> int:
        return len(self.geometry)

    def take(self, index: np.ndarray) -> RegionPieces:
        return RegionPieces(*(getattr(self, name)[index] for name in self._FIELDS))

    @staticmethod
    def concat(parts: Sequence[RegionPieces]) -> RegionPieces:
        return RegionPieces(
            *(np.concatenate([getattr(p, n) for p in parts]) for n in RegionPieces._FIELDS)
        )


@dataclass(frozen=True, eq=False)
class FeatureBatch:
    """Finished regions ready for the GeoPackage: WKB in the CRS and the numeric columns."""

    wkb: np.ndarray
    class_id: np.ndarray
    pixel_count: np.ndarray
    area_m2: np.ndarray
    perimeter_m: np.ndarray
    mean_confidence: np.ndarray
    source: np.ndarray
    """Index of the source with most of the region's pixels (ties: the lower), -1 if none."""

    def __len__(self) -> int:
        return len(self.wkb)

    @staticmethod
    def empty() -> FeatureBatch:
        types = (object, np.int32, np.int64, float, float, float, np.int32)
        return FeatureBatch(*(np.empty(0, dtype=t) for t in types))

    @staticmethod
    def concat(parts: Sequence[FeatureBatch]) -> FeatureBatch:
        names = [f.name for f in fields(FeatureBatch)]
        return FeatureBatch(*(np.concatenate([getattr(p, n) for p in parts]) for n in names))


@dataclass(frozen=True, eq=False)
class BlockOutput:
    """A polygonized block: finished interior regions, seam pieces, and its edge labels."""

    features: FeatureBatch
    edges: BlockEdges
    seam_ids: np.ndarray
    seams: RegionPieces


def read_block(job: BlockJob, block: Block) -> np.ndarray:
    """Band 1 of the block as uint8 with every masked pixel (nodata or mask band) set to 255."""
    path = Path(job.classes_path)
    try:
        with rasterio.open(path) as src:
            data = src.read(1, window=block.window)
            mask = src.read_masks(1, window=block.window)
    except rasterio.errors.RasterioError as exc:
        raise unreadable_raster(path, exc) from exc
    valid = mask > 0
    if valid.any() and (data[valid].min() < 0 or data[valid].max() >= CLASS_NODATA):
        raise SceneError(
            f"{path}: class values must be 0..254 (255 = nodata), found "
            f"{data[valid].min()}..{data[valid].max()}; vectorize the classes.tif written by "
            "prediction"
        )
    return np.where(valid, data, CLASS_NODATA).astype(np.uint8)


def read_block_confidence(job: BlockJob, block: Block) -> np.ndarray | None:
    """Band 1 of the confidence raster in the block as float64, NaN where masked."""
    if job.confidence_path is None:
        return None
    path = Path(job.confidence_path)
    try:
        with rasterio.open(path) as src:
            values = src.read(1, window=block.window).astype(np.float64)
            mask = src.read_masks(1, window=block.window)
    except rasterio.errors.RasterioError as exc:
        raise unreadable_raster(path, exc) from exc
    values[mask == 0] = np.nan
    return values


def read_block_source(job: BlockJob, block: Block) -> np.ndarray | None:
    """Band 1 of the source raster in the block as int64, -1 where masked or out of range."""
    if job.source_path is None:
        return None
    path = Path(job.source_path)
    try:
        with rasterio.open(path) as src:
            values = src.read(1, window=block.window).astype(np.int64)
            mask = src.read_masks(1, window=block.window)
    except rasterio.errors.RasterioError as exc:
        raise unreadable_raster(path, exc) from exc
    values[(mask == 0) | (values >= job.n_sources)] = -1
    return values


def edge_strips(labels: np.ndarray) -> EdgeStrips:
    """The top and bottom rows and the left and right columns of an array, contiguous."""
    return tuple(  # type: ignore[return-value]
        np.ascontiguousarray(s) for s in (labels[0, :], labels[-1, :], labels[:, 0], labels[:, -1])
    )


def block_edges(label_strips: EdgeStrips, classes: np.ndarray) -> BlockEdges:
    """A block's edges: its region labels along them and its class values there."""
    return BlockEdges(label_strips, edge_strips(classes))


def seam_labels(label_strips: EdgeStrips, block: Block) -> np.ndarray:
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


def traced_edge_labels(geometry: np.ndarray, block: Block) -> EdgeStrips:
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


@dataclass(frozen=True)
class _OffFrame:
    """Edge chooser (`cut_at_pixels`): the edges that do not lie on a block's outline."""

    x0: int
    y0: int
    x1: int
    y1: int

    @staticmethod
    def of(block: Block) -> _OffFrame:
        x0, y0 = block.col_off, block.row_off
        return _OffFrame(x0, y0, x0 + block.width, y0 + block.height)

    def __call__(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        vertical, horizontal = a[:, 0] == b[:, 0], a[:, 1] == b[:, 1]
        on_frame = (vertical & ((a[:, 0] == self.x0) | (a[:, 0] == self.x1))) | (
            horizontal & ((a[:, 1] == self.y0) | (a[:, 1] == self.y1))
        )
        return ~on_frame


@lru_cache(maxsize=4)
def _crs(wkt: str) -> pyproj.CRS:
    return pyproj.CRS.from_wkt(wkt)


def finish_regions(job: BlockJob, pieces: RegionPieces) -> FeatureBatch:
    """Complete regions in pixel space -> WKB in the CRS with area, perimeter, mean."""
    geometry = map_xy(pieces.geometry, job.transform)
    area, perimeter = measure_m(geometry, _crs(job.crs_wkt))
    if job.connectivity == Connectivity.EIGHT:
        geometry = as_multipolygons(geometry)
    wkb = shapely.to_wkb(geometry) if len(geometry) else np.empty(0, dtype=object)
    return FeatureBatch(
        wkb=wkb,
        class_id=pieces.class_id.astype(np.int32),
        pixel_count=pieces.pixel_count.astype(np.int64),
        area_m2=np.asarray(area, dtype=np.float64),
        perimeter_m=np.asarray(perimeter, dtype=np.float64),
        mean_confidence=mean_or_nan(pieces.confidence_sum, pieces.confidence_count),
        source=majority_source(pieces.source_counts),
    )


def majority_source(counts: np.ndarray) -> np.ndarray:
    """Per row of a (regions, sources) count matrix, the column with the most pixels.

    Ties go to the lower index (`numpy.argmax`); a row without any counted pixel is -1.
    """
    if counts.shape[1] == 0:
        return np.full(len(counts), -1, dtype=np.int32)
    best = np.argmax(counts, axis=1).astype(np.int32)
    best[counts.sum(axis=1) == 0] = -1
    return best


def simplify_coverage(
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
        extra = repair_if_invalid(polygonize_labels(nodata_labels, origin))
    coverage = cut_at_pixels(np.concatenate([geometry, extra]), _OffFrame.of(block))
    simplified = shapely.coverage_simplify(coverage, tolerance_px, simplify_boundary=False)
    return np.asarray(simplified, dtype=object)[: len(geometry)]
