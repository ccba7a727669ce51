"""Boundary edges linked into rings, and rings into polygons, with array operations.

A successor permutation (``following[i]``: the edge or event after ``i``) is cut into its
cycles, listed ring by ring; signed areas tell shells from holes. Shared by the crack tracer
(`geoseg.vectorize.trace`) and the crack union of seam pieces (`geoseg.vectorize.crackunion`).
"""

from __future__ import annotations

import numpy as np
import shapely
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import connected_components, depth_first_order


def first_index(labels: np.ndarray, n_labels: int) -> np.ndarray:
    """The first position of each label 0..n_labels-1 in ``labels`` (each must occur)."""
    first = np.empty(n_labels, dtype=np.int64)
    first[labels[::-1]] = np.arange(len(labels) - 1, -1, -1)  # the last write wins
    return first


def cycles(following: np.ndarray) -> tuple[int, np.ndarray]:
    """Number of cycles of the permutation ``following`` and each element's cycle label."""
    n = len(following)
    graph = csr_matrix((np.ones(n, np.int8), following, np.arange(n + 1)), shape=(n, n))
    return connected_components(graph, directed=True, connection="weak")


def ring_order(
    following: np.ndarray, ring: np.ndarray, n_rings: int
) -> tuple[np.ndarray, np.ndarray]:
    """Elements in ring order, rings one after another, and whether each starts a ring.

    Each cycle is cut at its first element and its last element is pointed at the next
    ring's first, making one path through everything that a depth-first walk lists in order.
    """
    n = len(following)
    head = first_index(ring, n_rings)  # the smallest element of each cycle
    is_head = np.zeros(n, bool)
    is_head[head] = True
    path = following.copy()
    tails = np.flatnonzero(is_head[following])
    path[tails] = np.append(head[1:], n)[ring[tails]]
    indptr = np.append(np.arange(n + 1), n)
    graph = csr_matrix((np.ones(n, np.int8), path, indptr), shape=(n + 1, n + 1))
    order = depth_first_order(graph, int(head[0]), directed=True, return_predecessors=False)
    order = order[order < n]
    return order, is_head[order]


def ring_areas(
    start: np.ndarray, end: np.ndarray, cycle: np.ndarray, heads: np.ndarray
) -> np.ndarray:
    """Signed area of each ring (in the order of ``heads``) from its edges ``start -> end``
    and their cycle labels: positive for rings with their region inside (shells)."""
    cross = start[:, 0] * end[:, 1] - end[:, 0] * start[:, 1]
    return np.bincount(cycle, weights=cross, minlength=len(heads))[cycle[heads]] / 2


def assemble_polygons(linear: np.ndarray, shell: np.ndarray, polygon: np.ndarray) -> np.ndarray:
    """Polygons from linear rings: ring k goes to polygon ``polygon[k]``, shells first."""
    order = np.lexsort((~shell, polygon))
    return np.asarray(shapely.polygons(linear[order], indices=polygon[order]), dtype=object)
