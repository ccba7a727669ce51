"""Seam merge: pieces of one region cut by block seams, grouped and unioned exactly."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import shapely
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from geoseg.geo.grid import Block, BlockGrid
from geoseg.vectorize.blocks import (
    _BOTTOM,
    _LEFT,
    _RIGHT,
    _TOP,
    _Edges,
    _Features,
    _finish,
    _Job,
    _Pieces,
)
from geoseg.vectorize.core import _cut_at_pixels, _group_parts
from geoseg.vectorize.crackunion import union_crack_pieces
from geoseg.vectorize.options import Connectivity


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


def _union_groups(
    geometries: np.ndarray,
    *,
    order: np.ndarray,
    starts: np.ndarray,
    counts: np.ndarray,
    groups: np.ndarray,
    job: _Job,
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
    cut = _cut_at_pixels(geometries[flat], _on_block_grid(job.block_px))
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
        geometry = pieces.geometry[order[starts]].copy()
        several = np.flatnonzero(counts > 1)
        if len(several):
            geometry[several] = _union_groups(
                pieces.geometry, order=order, starts=starts, counts=counts, groups=several, job=job
            )
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
