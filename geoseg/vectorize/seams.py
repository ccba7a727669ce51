"""Seams between blocks: which region pieces on either side are one region.

From the region labels along the block edges alone (no geometry): every pair of adjacent
valid pixels across a seam (`cross_pairs`), the numbering of all seam pieces (`SeamIndex`),
their regions by union-find (`seam_groups`) and merge tasks that never split a region
(`merge_batches`). The block-wise run and the block-wise sieve both use them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from geoseg.geo.grid import Block, BlockGrid
from geoseg.vectorize.blocks import BOTTOM, LEFT, RIGHT, TOP, BlockEdges
from geoseg.vectorize.options import Connectivity


@dataclass(frozen=True, eq=False)
class CrossPairs:
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


def _strip(
    block: Block, edges: Sequence[BlockEdges], side: int, part: slice = slice(None)
) -> _Strip:
    rows = np.arange(block.row_off, block.row_off + block.height, dtype=np.int64)
    cols = np.arange(block.col_off, block.col_off + block.width, dtype=np.int64)
    if side in (TOP, BOTTOM):
        rows = np.full(block.width, rows[0] if side == TOP else rows[-1])
    else:
        cols = np.full(block.height, cols[0] if side == LEFT else cols[-1])
    own = edges[block.index]
    return _Strip(
        block.index, own.labels[side][part], own.classes[side][part], rows[part], cols[part]
    )


def _gdal_time(
    rows_a: np.ndarray, cols_a: np.ndarray, rows_b: np.ndarray, cols_b: np.ndarray, width: int
) -> np.ndarray:
    """When GDAL's sieve compares two adjacent pixels (see `CrossPairs`)."""
    b_later = (rows_b > rows_a) | ((rows_b == rows_a) & (cols_b > cols_a))
    row = np.where(b_later, rows_b, rows_a)
    col = np.where(b_later, cols_b, cols_a)
    dx = col - np.where(b_later, cols_a, cols_b)  # later col - earlier col
    same_row = rows_a == rows_b
    k = np.where(same_row, 3, np.where(dx == 0, 0, np.where(dx == 1, 1, 2)))
    return (row * width + col) * 4 + k


def _seam_sides(
    grid: BlockGrid, edges: Sequence[BlockEdges], eight: bool
) -> list[tuple[_Strip, _Strip, tuple[int, ...]]]:
    """The two sides of every seam and the shifts at which their pixels touch.

    Across a straight seam pixel ``i`` of one side touches pixel ``i`` of the other (and
    ``i +- 1`` with 8-connectivity); with 8-connectivity the corner pixels of diagonal blocks
    touch too.
    """
    shifts = (-1, 0, 1) if eight else (0,)
    first, last = slice(0, 1), slice(-1, None)
    sides: list[tuple[_Strip, _Strip, tuple[int, ...]]] = []
    for r in range(grid.n_rows):
        for c in range(grid.n_cols):
            block = grid.block(r, c)
            if c + 1 < grid.n_cols:
                right = grid.block(r, c + 1)
                sides.append((_strip(block, edges, RIGHT), _strip(right, edges, LEFT), shifts))
            if r + 1 < grid.n_rows:
                below = grid.block(r + 1, c)
                sides.append((_strip(block, edges, BOTTOM), _strip(below, edges, TOP), shifts))
            if eight and r + 1 < grid.n_rows and c + 1 < grid.n_cols:
                diagonal = grid.block(r + 1, c + 1)
                sides.append(
                    (_strip(block, edges, BOTTOM, last), _strip(diagonal, edges, TOP, first), (0,))
                )
            if eight and r + 1 < grid.n_rows and c > 0:
                diagonal = grid.block(r + 1, c - 1)
                sides.append(
                    (_strip(block, edges, BOTTOM, first), _strip(diagonal, edges, TOP, last), (0,))
                )
    return sides


def _touching(a: _Strip, b: _Strip, shift: int, width_px: int) -> list[np.ndarray] | None:
    """The `CrossPairs` columns of the valid pixels ``a[i]``, ``b[i + shift]`` (None: none)."""
    n = len(a.labels)
    ia = slice(max(0, -shift), n - max(0, shift))
    ib = slice(max(0, shift), n + min(0, shift))
    keep = (a.labels[ia] > 0) & (b.labels[ib] > 0)
    if not keep.any():
        return None
    count = int(keep.sum())
    return [
        np.full(count, a.block, dtype=np.int64),
        a.labels[ia][keep],
        a.classes[ia][keep],
        np.full(count, b.block, dtype=np.int64),
        b.labels[ib][keep],
        b.classes[ib][keep],
        _gdal_time(
            a.rows[ia][keep], a.cols[ia][keep], b.rows[ib][keep], b.cols[ib][keep], width_px
        ),
    ]


def cross_pairs(
    grid: BlockGrid, edges: Sequence[BlockEdges], connectivity: Connectivity
) -> CrossPairs:
    """Every 4- (or 8-) adjacent pair of valid pixels across a seam, from edge labels only."""
    columns: list[list[np.ndarray]] = [[] for _ in range(7)]
    for a, b, shifts in _seam_sides(grid, edges, connectivity == Connectivity.EIGHT):
        for shift in shifts:  # a[i] touches b[i + shift]
            found = _touching(a, b, shift, grid.width_px)
            if found is not None:
                for column, values in zip(columns, found, strict=True):
                    column.append(values)
    arrays = [
        np.concatenate(col).astype(np.int64) if col else np.empty(0, dtype=np.int64)
        for col in columns
    ]
    return CrossPairs(*arrays)


@dataclass(frozen=True, eq=False)
class SeamIndex:
    """Numbering of all seam pieces: block ``k``'s pieces are ``offsets[k]:offsets[k+1]``."""

    offsets: np.ndarray
    keys: np.ndarray

    @staticmethod
    def build(seam_ids: Sequence[np.ndarray]) -> SeamIndex:
        sizes = np.array([len(s) for s in seam_ids], dtype=np.int64)
        offsets = np.concatenate(([0], np.cumsum(sizes)))
        keys = np.concatenate(
            [(np.int64(k) << 32) | s.astype(np.int64) for k, s in enumerate(seam_ids)]
            or [np.empty(0, dtype=np.int64)]
        )
        return SeamIndex(offsets, keys)

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


def seam_groups(pairs: CrossPairs, index: SeamIndex) -> tuple[np.ndarray, int]:
    """Union-find over seam adjacency: the region (group) of every seam piece."""
    same = pairs.class_a == pairs.class_b
    a = index.find(pairs.block_a[same], pairs.label_a[same])
    b = index.find(pairs.block_b[same], pairs.label_b[same])
    n = len(index)
    graph = coo_matrix((np.ones(len(a), dtype=np.int8), (a, b)), shape=(n, n))
    n_groups, group_of = connected_components(graph, directed=False)
    return group_of.astype(np.int64), int(n_groups)


def merge_batches(group_of: np.ndarray, max_pieces: int) -> list[np.ndarray]:
    """Pieces per merge task, sorted by group; groups are never split across tasks."""
    if not len(group_of):
        return []
    order = np.argsort(group_of, kind="stable")
    sizes = np.bincount(group_of)
    group_batch = (np.cumsum(sizes) - sizes) // max(1, max_pieces)
    piece_batch = group_batch[group_of[order]]
    cuts = np.flatnonzero(np.diff(piece_batch)) + 1
    return np.split(order, cuts)
