"""Merge tasks: the pieces of each region cut by seams unioned into one region, and finished.

4-connected regions are re-linked on the crack lattice (`geoseg.vectorize.crackunion`), vertex
for vertex the single-pass rings. Simplified regions take a coverage union and get one vertex
at each seam node, so that neighbours across a seam share their vertices; 8-connected ones
take GEOS's overlay union.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import shapely

from geoseg.geo.grid import BlockGrid
from geoseg.vectorize.blocks import (
    BOTTOM,
    LEFT,
    RIGHT,
    TOP,
    BlockEdges,
    BlockJob,
    FeatureBatch,
    RegionPieces,
    finish_regions,
)
from geoseg.vectorize.crackunion import union_crack_pieces
from geoseg.vectorize.geometry import cut_at_pixels, without_vertices
from geoseg.vectorize.options import Connectivity


@dataclass(frozen=True, eq=False)
class SeamNodes:
    """Where region boundaries meet each seam, from either side (sorted keys).

    Vertical seam ``x = c * block`` at row ``y``: key ``c * (height + 1) + y``; horizontal
    seam ``y = r * block`` at column ``x``: key ``r * (width + 1) + x``. Block corners count.
    """

    vertical: np.ndarray
    horizontal: np.ndarray


def seam_nodes(grid: BlockGrid, edges: Sequence[BlockEdges]) -> SeamNodes:
    """Node positions on every seam: where the labels change along either side of it."""
    b, h, w = grid.block_px, grid.height_px, grid.width_px
    vertical: list[np.ndarray] = []
    for c in range(1, grid.n_cols):
        for r in range(grid.n_rows):
            left = edges[grid.block(r, c - 1).index].labels[RIGHT]
            right = edges[grid.block(r, c).index].labels[LEFT]
            change = np.flatnonzero((left[1:] != left[:-1]) | (right[1:] != right[:-1])) + 1
            rows = np.concatenate(([0, len(left)], change)) + r * b
            vertical.append(c * (h + 1) + rows)
    horizontal: list[np.ndarray] = []
    for r in range(1, grid.n_rows):
        for c in range(grid.n_cols):
            above = edges[grid.block(r - 1, c).index].labels[BOTTOM]
            below = edges[grid.block(r, c).index].labels[TOP]
            change = np.flatnonzero((above[1:] != above[:-1]) | (below[1:] != below[:-1])) + 1
            cols = np.concatenate(([0, len(above)], change)) + c * b
            horizontal.append(r * (w + 1) + cols)
    empty = np.empty(0, dtype=np.int64)
    return SeamNodes(
        np.unique(np.concatenate(vertical or [empty])).astype(np.int64),
        np.unique(np.concatenate(horizontal or [empty])).astype(np.int64),
    )


@dataclass(frozen=True)
class _OnBlockGrid:
    """Edge chooser (`cut_at_pixels`): edges that lie on a line of the block grid (seams)."""

    block_px: int

    def __call__(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return ((a[:, 0] == b[:, 0]) & (a[:, 0] % self.block_px == 0)) | (
            (a[:, 1] == b[:, 1]) & (a[:, 1] % self.block_px == 0)
        )


@dataclass(frozen=True, eq=False)
class _BetweenSeamNodes:
    """Vertex chooser (`without_vertices`): vertices on a seam that are not one of its nodes."""

    job: BlockJob
    nodes: SeamNodes

    def __call__(self, xy: np.ndarray, collinear: np.ndarray) -> np.ndarray:
        b, h, w = self.job.block_px, self.job.height_px, self.job.width_px
        x, y = xy[:, 0], xy[:, 1]
        integral = (x == np.floor(x)) & (y == np.floor(y))
        on_vertical = integral & (x % b == 0) & (x > 0) & (x < w)
        on_horizontal = integral & (y % b == 0) & (y > 0) & (y < h)
        key_v = (x // b).astype(np.int64) * (h + 1) + y.astype(np.int64)
        key_h = (y // b).astype(np.int64) * (w + 1) + x.astype(np.int64)
        node = (on_vertical & np.isin(key_v, self.nodes.vertical)) | (
            on_horizontal & np.isin(key_h, self.nodes.horizontal)
        )
        return (on_vertical | on_horizontal) & ~node


def _collinear(xy: np.ndarray, collinear: np.ndarray) -> np.ndarray:
    """Vertex chooser (`without_vertices`): every vertex inside a straight edge."""
    return collinear


def _drop_collinear(geometries: np.ndarray) -> np.ndarray:
    """Without the vertices inside straight edges: those a union leaves where seams were.

    A single GDAL pass never emits them, so merged rings become the rings it traces.
    """
    return without_vertices(geometries, _collinear)


def _seam_vertices_at_nodes(geometries: np.ndarray, job: BlockJob, nodes: SeamNodes) -> np.ndarray:
    """Simplified regions along seams: one vertex at every node, none in between.

    Both regions along a seam stretch then have the same vertices (a valid coverage), and
    the pixel-by-pixel vertices the merge needed are gone.
    """
    geometries = cut_at_pixels(geometries, _OnBlockGrid(job.block_px))
    return without_vertices(geometries, _BetweenSeamNodes(job, nodes))


def _union_groups(
    geometries: np.ndarray,
    *,
    order: np.ndarray,
    starts: np.ndarray,
    counts: np.ndarray,
    groups: np.ndarray,
    job: BlockJob,
) -> np.ndarray:
    """One region per group from its pieces: coverage union where exact, else overlay union.

    Group ``g`` is ``geometries[order[starts[g] : starts[g] + counts[g]]]``. The seam edges of
    all pieces are cut at every pixel in one vectorized call. 8-connected pieces can meet at
    single corner points, which a coverage union would turn into self-touching rings: those
    take GEOS's overlay union, as does a coverage union whose area differs from its pieces'
    (it never should).
    """
    members = [order[starts[g] : starts[g] + counts[g]] for g in groups]
    if job.connectivity != Connectivity.FOUR:
        return np.array([shapely.union_all(geometries[m]) for m in members], dtype=object)
    flat = np.concatenate(members)
    cut = cut_at_pixels(geometries[flat], _OnBlockGrid(job.block_px))
    bounds = np.cumsum([0, *(len(m) for m in members)])
    merged = np.array(
        [shapely.coverage_union_all(cut[a:b]) for a, b in itertools.pairwise(bounds)],
        dtype=object,
    )
    # a coverage union is exact here; anything else (never seen) takes the overlay union
    piece_area = np.add.reduceat(shapely.area(geometries[flat]), bounds[:-1])
    good = (shapely.get_type_id(merged) == shapely.GeometryType.POLYGON) & np.isclose(
        shapely.area(merged), piece_area, rtol=1e-9, atol=0.0
    )
    for i in np.flatnonzero(~good):
        merged[i] = shapely.union_all(geometries[members[i]])
    return merged


def _overlay_merged(
    job: BlockJob,
    nodes: SeamNodes | None,
    geometry: np.ndarray,
    *,
    order: np.ndarray,
    starts: np.ndarray,
    counts: np.ndarray,
) -> np.ndarray:
    """One geometry per group by polygon unions (8-connected or simplified regions).

    Unions are exact (integer pixel coordinates); `_drop_collinear` then removes the vertices
    the seams left, giving the rings a single pass traces. Simplified regions instead get a
    vertex at each seam node (`_seam_vertices_at_nodes`): their neighbours across the seam
    need the same vertices.
    """
    merged = geometry[order[starts]].copy()
    several = np.flatnonzero(counts > 1)
    if len(several):
        merged[several] = _union_groups(
            geometry, order=order, starts=starts, counts=counts, groups=several, job=job
        )
    if job.simplify_px == 0:
        merged[several] = _drop_collinear(merged[several])
    elif nodes is not None:
        merged = _seam_vertices_at_nodes(merged, job, nodes)
    return merged


def _group_sums(group_of: np.ndarray, values: np.ndarray, n_groups: int) -> np.ndarray:
    """Per group, the sum of its pieces' ``values``."""
    return np.bincount(group_of, weights=values, minlength=n_groups)


def _group_count_rows(group_of: np.ndarray, counts: np.ndarray, n_groups: int) -> np.ndarray:
    """Per group, the column-wise sum of its pieces' rows of an integer count matrix."""
    out = np.zeros((n_groups, counts.shape[1]), dtype=np.int64)
    np.add.at(out, group_of, counts)
    return out


def merge_pieces(
    job: BlockJob,
    nodes: SeamNodes | None,
    group_of: np.ndarray,
    n_groups: int,
    *selections: RegionPieces,
) -> FeatureBatch:
    """Worker task: union the pieces of each group (one region each) and finish them.

    ``group_of[i]`` (0..n_groups-1) is the group of piece ``i`` of the concatenated
    ``selections``; pixel counts and confidence sums of a group's pieces add up.
    """
    pieces = RegionPieces.concat(selections)
    order = np.argsort(group_of, kind="stable")
    counts = np.bincount(group_of, minlength=n_groups)
    starts = np.concatenate(([0], np.cumsum(counts)[:-1]))
    if job.connectivity == Connectivity.FOUR and job.simplify_px == 0:
        geometry = union_crack_pieces(
            pieces.geometry,
            group_of,
            n_groups,
            block_px=job.block_px,
            width=job.width_px,
            height=job.height_px,
        )
    else:
        geometry = _overlay_merged(
            job, nodes, pieces.geometry, order=order, starts=starts, counts=counts
        )
    if job.connectivity == Connectivity.FOUR and len(geometry):
        types = shapely.get_type_id(geometry)
        if not np.all(types == shapely.GeometryType.POLYGON):
            raise RuntimeError("seam merge: a 4-connected region did not merge into one polygon")
    pixel_count = _group_sums(group_of, pieces.pixel_count, n_groups)
    confidence_count = _group_sums(group_of, pieces.confidence_count, n_groups)
    merged = RegionPieces(
        geometry=geometry,
        class_id=pieces.class_id[order[starts]],
        pixel_count=np.rint(pixel_count).astype(np.int64),
        confidence_sum=_group_sums(group_of, pieces.confidence_sum, n_groups),
        confidence_count=np.rint(confidence_count).astype(np.int64),
        source_counts=_group_count_rows(group_of, pieces.source_counts, n_groups),
    )
    return finish_regions(job, merged)
