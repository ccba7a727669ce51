"""Polygonize one array: class values + affine transform -> polygons with exact per-region sums.

Pure, no I/O. `polygonize_array` takes the regions from the crack tracer, joins 4-connected
parts at their corner contacts for 8-connectivity, and adds up pixel counts and confidence
over the tracer's pixel runs. `label_components` (scipy) and `label_regions` (tracer) give
the label image of the same regions.
"""

from __future__ import annotations

import numpy as np
from affine import Affine
from scipy import ndimage
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import connected_components

from geoseg.classes import CLASS_NODATA
from geoseg.errors import ConfigError
from geoseg.vectorize.geometry import group_parts
from geoseg.vectorize.options import Connectivity, PolygonTable
from geoseg.vectorize.rings import first_index
from geoseg.vectorize.trace import PixelRuns, trace_polygons, trace_regions, trace_runs


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

    The rings are traced by `geoseg.vectorize.trace` (the rings of GDAL's polygonizer).
    Refuses ids that are not exactly 1..max, one polygon each.
    """
    n = int(labels.max(initial=0))
    polygons, ids = trace_polygons(labels, 0, transform)
    ids = np.asarray(ids).astype(np.int64)
    if not np.array_equal(np.sort(ids), np.arange(1, n + 1)):
        raise RuntimeError(
            f"polygonize: {len(ids)} polygons for {n} connected regions; the labelling and "
            "the polygonizer disagree on connectivity"
        )
    by_id = np.empty(n, dtype=object)
    by_id[ids - 1] = polygons
    return by_id


def _eight_connected(
    n: int, contacts: tuple[np.ndarray, np.ndarray]
) -> tuple[int, np.ndarray, np.ndarray]:
    """Join 4-connected parts at their corner contacts: ``(n regions, region of each part,
    first part of each region)``, regions numbered in the order of their first part."""
    a, b = contacts
    graph = csr_matrix((np.ones(len(a), np.int8), (a, b)), shape=(n, n))
    n_regions, region = connected_components(graph, directed=False)
    first = first_index(region, n_regions)
    rank = np.empty(n_regions, dtype=np.int64)
    rank[np.argsort(first)] = np.arange(n_regions)
    return n_regions, rank[region], np.sort(first)


def _renamed(runs: PixelRuns, region: np.ndarray) -> PixelRuns:
    named = runs.region >= 0
    ids = np.where(named, region[np.maximum(runs.region, 0)], -1)
    return PixelRuns(runs.row, runs.start, runs.stop, ids)


def label_regions(
    classes: np.ndarray,
    *,
    nodata: int = CLASS_NODATA,
    connectivity: Connectivity = Connectivity.FOUR,
) -> tuple[np.ndarray, np.ndarray]:
    """`label_components` from the crack tracer's pixel runs: the same ids, several times
    faster (no labelling pass per class)."""
    runs, value, contacts = trace_runs(np.asarray(classes), nodata)
    if connectivity == Connectivity.EIGHT and len(contacts[0]):
        _, region, first = _eight_connected(len(value), contacts)
        runs, value = _renamed(runs, region), value[first]
    ids = (runs.region + 1).astype(np.int32)
    labels = np.repeat(ids, runs.stop - runs.start).reshape(np.shape(classes))
    return labels, value


def traced_regions(
    classes: np.ndarray, transform: Affine, *, nodata: int, connectivity: Connectivity
) -> tuple[np.ndarray, np.ndarray, PixelRuns]:
    """``(geometry, class per region, pixel runs)``, runs naming regions by row number.

    4-connected regions come straight from the tracer. An 8-connected region is the union
    of 4-connected parts joined at corners (connected components of the tracer's corner
    contacts): one MultiPolygon of valid parts. Regions keep the tracer's order, by class
    and then first pixel, as `label_components` numbers them.
    """
    parts, part_class, runs, (a, b) = trace_regions(classes, nodata, transform)
    if connectivity == Connectivity.FOUR or not len(a):
        return parts, part_class, runs
    n_regions, region, first = _eight_connected(len(parts), (a, b))
    geometry = group_parts(parts, region, n_regions)
    return geometry, part_class[first], _renamed(runs, region)


def run_sums(
    runs: PixelRuns, n: int, confidence: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per region: pixel count, sum and count of the confidence pixels that have a value.

    Sums over the pixel runs, not means, so that pieces of one region from several blocks
    add up exactly.
    """
    valid = runs.region >= 0
    region = runs.region[valid]
    length = (runs.stop - runs.start)[valid]
    pixel_count = np.bincount(region, weights=length, minlength=n).astype(np.int64)
    if confidence is None:
        return pixel_count, np.zeros(n), np.zeros(n, dtype=np.int64)
    values = np.asarray(confidence, dtype=np.float64).ravel()
    known = np.isfinite(values)
    first = runs.row * np.shape(confidence)[1] + runs.start  # runs cover every pixel, in order
    run_sum = np.add.reduceat(np.where(known, values, 0.0), first)[valid]
    run_count = np.add.reduceat(known.astype(np.int64), first)[valid]
    sums = np.bincount(region, weights=run_sum, minlength=n)
    counts = np.bincount(region, weights=run_count, minlength=n).astype(np.int64)
    return pixel_count, sums, counts


def run_source_counts(
    runs: PixelRuns, n: int, source: np.ndarray | None, n_sources: int
) -> np.ndarray:
    """Per region, its pixels per source index: an (n, n_sources) int64 matrix.

    ``source`` holds a source index per pixel (-1 = none); counts, like `run_sums`, add up
    across the pieces of a region cut by seams.
    """
    if source is None or n_sources == 0:
        return np.zeros((n, 0), dtype=np.int64)
    lengths = (runs.stop - runs.start).astype(np.int64)
    region = np.repeat(runs.region, lengths)  # runs cover every pixel, in order
    values = np.asarray(source, dtype=np.int64).ravel()
    counted = (region >= 0) & (values >= 0)
    cell = region[counted].astype(np.int64) * n_sources + values[counted]
    return np.bincount(cell, minlength=n * n_sources).reshape(n, n_sources)


def run_edge_labels(
    runs: PixelRuns, height: int, width: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Region ids (polygon + 1, 0 = nodata) along the top, bottom, left and right edges."""
    ids = (runs.region + 1).astype(np.int32)
    first_in_row = runs.start == 0
    last_in_row = runs.stop == width
    top, bottom = _row_ids(runs, ids, 0), _row_ids(runs, ids, height - 1)
    return top, bottom, ids[first_in_row], ids[last_in_row]


def _row_ids(runs: PixelRuns, ids: np.ndarray, row: int) -> np.ndarray:
    """The region id of every pixel of one row, from the runs along it."""
    on = runs.row == row
    return np.repeat(ids[on], (runs.stop - runs.start)[on])


def mean_or_nan(sums: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """``sums / counts``, NaN where the count is 0."""
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
    geometry, component_class, runs = traced_regions(
        classes, transform, nodata=nodata, connectivity=connectivity
    )
    pixel_count, sums, counts = run_sums(runs, len(geometry), confidence)
    return PolygonTable(
        geometry=geometry,
        class_id=component_class.astype(np.int32),
        pixel_count=pixel_count,
        mean_confidence=mean_or_nan(sums, counts),
    )
