"""Polygon edits in pixel coordinates, vectorized over all rings at once.

Parts grouped into one geometry per region, OGC-invalid polygons repaired, axis-parallel edges
cut at every pixel corner, and vertices inside straight edges dropped. Pixel coordinates are
integers, so every test here is exact.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import shapely

EdgeChooser = Callable[[np.ndarray, np.ndarray], np.ndarray]
"""``chosen(a, b)``: which of the edges ``a -> b`` (start and end points, pixel coordinates)."""

VertexChooser = Callable[[np.ndarray, np.ndarray], np.ndarray]
"""``drop(xy, collinear)``: which of the vertices ``xy`` (``collinear``: inside a straight edge)."""


def group_parts(parts: np.ndarray, owner: np.ndarray, n_groups: int) -> np.ndarray:
    """One geometry per group: the Polygon itself for one part, else a MultiPolygon."""
    order = np.argsort(owner, kind="stable")
    sorted_owner = owner[order]
    sorted_parts = parts[order]
    multi = shapely.multipolygons(sorted_parts, indices=sorted_owner)
    first = sorted_parts[np.searchsorted(sorted_owner, np.arange(n_groups))]
    single = np.bincount(owner, minlength=n_groups) == 1
    return np.where(single, first, multi)


def repair_if_invalid(geometries: np.ndarray) -> np.ndarray:
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


def cut_at_pixels(geometries: np.ndarray, chosen: EdgeChooser) -> np.ndarray:
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
    return group_parts(polygons, part_owner, len(geometries))


def without_vertices(geometries: np.ndarray, drop: VertexChooser) -> np.ndarray:
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
    return group_parts(polygons, part_owner, len(geometries))
