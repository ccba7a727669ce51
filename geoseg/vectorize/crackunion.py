"""Union of region pieces cut by block seams, on the pixel-edge lattice, for all groups at once.

No polygon overlay: the pieces' seam edges are cut into unit cracks, a crack two pieces of one
group run along in opposite directions (inside the region) is dropped, and the rest are
re-linked end to start with the tracer's rules. The result is, vertex for vertex, the region
traced in one piece. Exact: pixel coordinates are integers.
"""

from __future__ import annotations

import numpy as np
import shapely

from geoseg.vectorize.lattice import E, N, S, W
from geoseg.vectorize.rings import assemble_polygons, cycles, ring_areas, ring_order


def _directions(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Direction code of each axis-parallel edge a -> b (rows grow downwards)."""
    dx, dy = b[:, 0] - a[:, 0], b[:, 1] - a[:, 1]
    return np.select([dx > 0, dy > 0, dx < 0], [E, S, W], N).astype(np.int8)


def _edges(pieces: np.ndarray, group: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every ring edge of every piece: start, end, and the group of its piece.

    Rings are oriented first so that each runs with its region on the right (shells
    positive in pixel coordinates), as the tracer leaves them.
    """
    oriented = shapely.orient_polygons(pieces, exterior_cw=False)
    rings, ring_piece = shapely.get_rings(oriented, return_index=True)
    xy, vertex_ring = shapely.get_coordinates(rings, return_index=True)
    edge = vertex_ring[:-1] == vertex_ring[1:]
    first = np.flatnonzero(edge)
    return xy[first], xy[first + 1], group[ring_piece[vertex_ring[first]]]


def _unit_cracks(
    a: np.ndarray, b: np.ndarray, owner: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Edges cut into unit-length cracks: starts, ends, owners."""
    length = np.abs(b - a).sum(axis=1).astype(np.int64)
    step = (b - a) / np.maximum(length, 1)[:, None]
    k = np.arange(int(length.sum())) - np.repeat(np.cumsum(length) - length, length)
    start = np.repeat(a, length, axis=0) + np.repeat(step, length, axis=0) * k[:, None]
    return start, start + np.repeat(step, length, axis=0), np.repeat(owner, length)


def _without_inner_cracks(
    a: np.ndarray, b: np.ndarray, owner: np.ndarray, width: int, height: int
) -> np.ndarray:
    """Mask of the unit cracks to keep: not run along in both directions within a group."""
    low = np.minimum(a, b).astype(np.int64)
    vertical = (a[:, 0] == b[:, 0]).astype(np.int64)
    key = ((owner * 2 + vertical) * (height + 1) + low[:, 1]) * (width + 1) + low[:, 0]
    _, inverse, counts = np.unique(key, return_inverse=True, return_counts=True)
    return counts[inverse] == 1


def _vertex_keys(p: np.ndarray, owner: np.ndarray, width: int, height: int) -> np.ndarray:
    """One integer per (group, lattice vertex) of the points ``p``."""
    ints = p.astype(np.int64)
    return (owner * (height + 1) + ints[:, 1]) * (width + 1) + ints[:, 0]


def _seams_cut_into_cracks(
    a: np.ndarray, b: np.ndarray, owner: np.ndarray, *, block_px: int, width: int, height: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The edges with those on seams cut into unit cracks, inner cracks dropped."""
    on_seam = (
        (a[:, 0] == b[:, 0]) & (a[:, 0] % block_px == 0) & (a[:, 0] > 0) & (a[:, 0] < width)
    ) | ((a[:, 1] == b[:, 1]) & (a[:, 1] % block_px == 0) & (a[:, 1] > 0) & (a[:, 1] < height))
    ua, ub, uowner = _unit_cracks(a[on_seam], b[on_seam], owner[on_seam])
    keep = _without_inner_cracks(ua, ub, uowner, width, height)
    return (
        np.concatenate([a[~on_seam], ua[keep]]),
        np.concatenate([b[~on_seam], ub[keep]]),
        np.concatenate([owner[~on_seam], uowner[keep]]),
    )


def _successors(
    a: np.ndarray,
    b: np.ndarray,
    owner: np.ndarray,
    *,
    direction: np.ndarray,
    width: int,
    height: int,
) -> np.ndarray:
    """``following[i]``: the edge that leaves where edge ``i`` ends, in the same group.

    At a vertex where the region meets itself diagonally (two in, two out), an edge coming
    in heading d leaves turning left, d - 1.
    """
    at_start = _vertex_keys(a, owner, width, height)
    at_end = _vertex_keys(b, owner, width, height)
    starts = np.lexsort((direction, at_start))
    ends = np.lexsort(((direction + 3) % 4, at_end))
    if not np.array_equal(at_start[starts], at_end[ends]):
        raise RuntimeError("seam merge: the pieces' edges do not close up; this is a bug in geoseg")
    following = np.empty(len(a), dtype=np.int64)
    following[ends] = starts
    return following


def union_crack_pieces(
    pieces: np.ndarray,
    group: np.ndarray,
    n_groups: int,
    *,
    block_px: int,
    width: int,
    height: int,
) -> np.ndarray:
    """One Polygon per group: the union of its pieces (4-connected, traced per block).

    ``pieces`` are Polygons in pixel coordinates of a ``height`` x ``width`` raster cut into
    ``block_px`` blocks; ``group[i]`` (0..n_groups-1, each used) is piece i's region.
    """
    a, b, owner = _edges(np.asarray(pieces, dtype=object), np.asarray(group, dtype=np.int64))
    a, b, owner = _seams_cut_into_cracks(a, b, owner, block_px=block_px, width=width, height=height)
    direction = _directions(a, b)
    following = _successors(a, b, owner, direction=direction, width=width, height=height)
    n_rings, cycle = cycles(following)
    order, ring_start = ring_order(following, cycle, n_rings)
    previous = np.empty_like(following)
    previous[following] = np.arange(len(following))
    turn = direction != direction[previous]  # vertices where the boundary runs straight on go
    kept = turn[order]
    ring = (np.cumsum(ring_start) - 1)[kept]
    heads = order[ring_start]
    shell = ring_areas(a, b, cycle, heads) > 0
    ring_group = owner[heads]
    if not np.array_equal(np.sort(ring_group[shell]), np.arange(n_groups)):
        raise RuntimeError("seam merge: a region without exactly one outer ring; a bug in geoseg")
    linear = shapely.linearrings(a[order][kept], indices=ring)
    return assemble_polygons(linear, shell, ring_group)
