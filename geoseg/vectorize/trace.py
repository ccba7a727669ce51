"""Crack tracing: polygons of 4-connected regions of equal value, built with array operations.

Each 4-connected region of equal value becomes one polygon whose rings run along the pixel
edges ("cracks") with a vertex only where they turn: exactly the polygons of GDAL's
polygonizer (``gdal_polygonize.py``, ``rasterio.features.shapes``), about twice as fast and
with no Python object per feature on the way (GDAL's path builds a GeoJSON dict of tuples
per polygon, which costs as much again as its tracing).

How it works, on the lattice of pixel corners:

1. A corner vertex is one where some boundary turns. The 2x2 pixels around it say, through a
   lookup table of their equality pattern, which regions turn there and from which direction
   to which: one *event* per turn. Boundaries are walked with their region on the right.
2. The straight run that leaves an event along a lattice line ends at the next event on that
   line that enters the same direction; as runs of one direction on one line never overlap,
   the k-th start pairs with the k-th end. This links all events into cycles: the rings.
3. Walking with the region on the right hugs it, so regions meeting only diagonally stay
   apart (4-connectivity). A region that meets *itself* diagonally would get one ring through
   that vertex twice; it is split there into a shell and a hole touching at the vertex, as
   GDAL does, so every polygon is OGC-valid.
4. Rings around their region are shells (positive area), the others holes; a hole belongs to
   the smallest shell of the same value that holds one of the hole's own region pixels.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
import shapely
from affine import Affine
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import connected_components, depth_first_order

from geoseg.geo.scene import affine_xy

# Directions of travel on the lattice (rows grow downwards) and the four pixels round a vertex.
_E, _S, _W, _N = range(4)
_TL, _TR, _BL, _BR = range(4)
_NEIGHBOURS = {
    _TL: (_TR, _BL, _BR),
    _TR: (_TL, _BR, _BL),
    _BL: (_BR, _TL, _TR),
    _BR: (_BL, _TR, _TL),
}
# (enter, leave) of a boundary turning round the outer corner of a pixel (the pixel is the
# region's only one of the four) and round an inner corner (the pixel's two neighbours are
# the region's too, the diagonal one is not).
_CONVEX = {_TL: (_S, _W), _TR: (_W, _N), _BR: (_N, _E), _BL: (_E, _S)}
_CONCAVE = {_BR: (_E, _N), _BL: (_S, _E), _TL: (_W, _S), _TR: (_N, _W)}
_PAIRS = ((_TL, _TR), (_TL, _BL), (_TL, _BR), (_TR, _BL), (_TR, _BR), (_BL, _BR))
_DIAGONALS = ((_TL, _BR), (_TR, _BL))
# Centre of each quadrant's pixel relative to the vertex.
_QUADRANT_DX = np.array([-0.5, 0.5, -0.5, 0.5])
_QUADRANT_DY = np.array([-0.5, -0.5, 0.5, 0.5])
_N_CODES = 1 << (len(_PAIRS) + 4)


@dataclass(frozen=True, eq=False)
class _EventTable:
    """Per 2x2 pattern code: its events (quadrant, enter, leave) and its diagonal pinches."""

    count: np.ndarray  # (codes,) events at a vertex with this pattern, 0..4
    quadrant: np.ndarray  # (codes, 4)
    enter: np.ndarray  # (codes, 4)
    leave: np.ndarray  # (codes, 4)
    pinch: np.ndarray  # (codes, 2 diagonals, 2): slots of two same-value outer corners, or -1


def _pattern_code(values: tuple[int, ...], valid: tuple[bool, ...]) -> int:
    code = 0
    for bit, (i, j) in enumerate(_PAIRS):
        code |= int(values[i] == values[j]) << bit
    for q in range(4):
        code |= int(valid[q]) << (len(_PAIRS) + q)
    return code


def _build_event_table() -> _EventTable:
    """Enumerate every equality pattern of four pixels (with nodata) once, at import."""
    count = np.zeros(_N_CODES, np.int8)
    quadrant, enter, leave = (np.zeros((_N_CODES, 4), np.int8) for _ in range(3))
    pinch = np.full((_N_CODES, 2, 2), -1, np.int8)
    for values in itertools.product(range(4), repeat=4):
        for valid in itertools.product((False, True), repeat=4):
            v = tuple(values[q] if valid[q] else -1 for q in range(4))
            code = _pattern_code(v, valid)
            events = []
            for q in range(4):
                if not valid[q]:
                    continue
                horizontal, vertical, diagonal = _NEIGHBOURS[q]
                if v[q] != v[horizontal] and v[q] != v[vertical]:
                    events.append((q, *_CONVEX[q]))
                elif v[q] == v[horizontal] == v[vertical] != v[diagonal]:
                    events.append((q, *_CONCAVE[q]))
            count[code] = len(events)
            for slot, (q, a, b) in enumerate(events):
                quadrant[code, slot], enter[code, slot], leave[code, slot] = q, a, b
            convex = [q for q, a, b in events if (a, b) == _CONVEX[q]]
            for k, (a, b) in enumerate(_DIAGONALS):
                if a in convex and b in convex and v[a] == v[b]:
                    slots = [q for q, *_ in events]
                    pinch[code, k] = (slots.index(a), slots.index(b))
    return _EventTable(count, quadrant, enter, leave, pinch)


_TABLE = _build_event_table()


@dataclass(frozen=True, eq=False)
class _Events:
    """Every turn of every boundary: its vertex, direction in and out, and region value."""

    row: np.ndarray
    col: np.ndarray
    quadrant: np.ndarray
    enter: np.ndarray
    leave: np.ndarray
    value: np.ndarray
    pinches: tuple[np.ndarray, np.ndarray]  # event pairs that may be one region's pinch

    def __len__(self) -> int:
        return len(self.row)


@dataclass(frozen=True, eq=False)
class Rings:
    """Traced rings in pixel (col, row) coordinates, vertices of ring k consecutive.

    ``shell`` rings have their region inside; ``polygon`` numbers the regions (shells in
    order) and gives each hole its region's; ``pixel_x``/``pixel_y`` is the centre of one of
    the ring's region pixels.
    """

    xy: np.ndarray
    ring_of_vertex: np.ndarray
    value: np.ndarray
    shell: np.ndarray
    area: np.ndarray
    polygon: np.ndarray
    pixel_x: np.ndarray
    pixel_y: np.ndarray

    def __len__(self) -> int:
        return len(self.value)

    def polygon_values(self) -> np.ndarray:
        """The value of each polygon (region), by polygon number: its shell's value."""
        value = np.empty(int(self.shell.sum()), dtype=self.value.dtype)
        value[self.polygon[self.shell]] = self.value[self.shell]
        return value


def _padded(values: np.ndarray, nodata: int) -> np.ndarray:
    out = np.full((values.shape[0] + 2, values.shape[1] + 2), nodata, dtype=values.dtype)
    out[1:-1, 1:-1] = values
    return out


def _corner_vertices(padded: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Flat indices (row-major over the (h+1) x (w+1) lattice) of vertices where rings turn,
    and of the vertical cracks (row-major over padded rows x lattice columns).

    A vertex is passed straight through when the cracks meeting there are none, or exactly
    the two above and below it, or exactly the two left and right of it.
    """
    vertical = padded[:, 1:] != padded[:, :-1]
    horizontal = padded[1:, :] != padded[:-1, :]
    above, below = vertical[:-1, :], vertical[1:, :]
    left, right = horizontal[:, :-1], horizontal[:, 1:]
    corners = np.flatnonzero((above ^ below) | (left ^ right) | (above & left))
    return corners, np.flatnonzero(vertical)


def first_index(labels: np.ndarray, n_labels: int) -> np.ndarray:
    """The first position of each label 0..n_labels-1 in ``labels`` (each must occur)."""
    first = np.empty(n_labels, dtype=np.int64)
    first[labels[::-1]] = np.arange(len(labels) - 1, -1, -1)  # the last write wins
    return first


def _events(padded: np.ndarray, vertices: np.ndarray, nodata: int) -> _Events:
    """The events of the corner vertices, in vertex order (row-major), via the pattern table."""
    width = padded.shape[1]
    row, col = np.divmod(vertices, width - 1)
    top_left = row * width + col
    flat = padded.ravel()
    quad = np.stack(
        [flat[top_left], flat[top_left + 1], flat[top_left + width], flat[top_left + width + 1]]
    )
    code = np.zeros(len(vertices), np.int16)
    for bit, (i, j) in enumerate(_PAIRS):
        code |= (quad[i] == quad[j]).astype(np.int16) << bit
    for q in range(4):
        code |= (quad[q] != nodata).astype(np.int16) << (len(_PAIRS) + q)
    count = _TABLE.count[code].astype(np.int64)
    first = np.cumsum(count) - count
    vertex = np.repeat(np.arange(len(vertices)), count)
    slot = np.arange(len(vertex)) - first[vertex]
    code_of = code[vertex]
    quadrant = _TABLE.quadrant[code_of, slot]
    pinch_a, pinch_b = [], []
    for k in range(len(_DIAGONALS)):
        at = np.flatnonzero(_TABLE.pinch[code, k, 0] >= 0)
        pinch_a.append(first[at] + _TABLE.pinch[code[at], k, 0])
        pinch_b.append(first[at] + _TABLE.pinch[code[at], k, 1])
    return _Events(
        row=row[vertex],
        col=col[vertex],
        quadrant=quadrant,
        enter=_TABLE.enter[code_of, slot],
        leave=_TABLE.leave[code_of, slot],
        value=quad[quadrant, vertex],
        pinches=(np.concatenate(pinch_a), np.concatenate(pinch_b)),
    )


def _link(events: _Events) -> np.ndarray:
    """``next[i]``: the event where the straight run leaving event ``i`` ends.

    Events come in row-major vertex order, so starts and ends of horizontal runs are already
    sorted along their lines; vertical ones are sorted by column (stably, rows stay sorted).
    """
    following = np.empty(len(events), dtype=np.int64)
    column = events.col.astype(np.uint16 if events.col.max(initial=0) < 2**16 else np.int64)
    for direction in (_E, _W, _S, _N):
        starts = np.flatnonzero(events.leave == direction)
        ends = np.flatnonzero(events.enter == direction)
        if direction in (_S, _N):
            starts = starts[np.argsort(column[starts], kind="stable")]
            ends = ends[np.argsort(column[ends], kind="stable")]
        if len(starts) != len(ends):
            raise RuntimeError("crack tracing: unbalanced runs; this is a bug in geoseg")
        following[starts] = ends
    return following


def _cycles(following: np.ndarray) -> tuple[int, np.ndarray]:
    """Number of cycles of the permutation ``following`` and each element's cycle label."""
    n = len(following)
    graph = csr_matrix((np.ones(n, np.int8), following, np.arange(n + 1)), shape=(n, n))
    return connected_components(graph, directed=True, connection="weak")


def _split_pinches(following: np.ndarray, events: _Events) -> tuple[int, np.ndarray]:
    """Split rings that pass one vertex twice (a region meeting itself diagonally).

    Swapping the successors of two events of one cycle splits it in two; two same-value
    outer corners across a vertex are on one ring exactly when they are one region's.
    """
    n_rings, ring = _cycles(following)
    a, b = events.pinches
    same = ring[a] == ring[b]
    if same.any():
        a, b = a[same], b[same]
        following[a], following[b] = following[b], following[a]
        n_rings, ring = _cycles(following)
    return n_rings, ring


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


def _ring_order(
    following: np.ndarray, ring: np.ndarray, n_rings: int
) -> tuple[np.ndarray, np.ndarray]:
    """Events in ring order, rings one after another, and whether each starts a ring.

    Each cycle is cut at its first event and its last event is pointed at the next ring's
    first, making one path through everything that a depth-first walk lists in order.
    """
    n = len(following)
    head = first_index(ring, n_rings)  # the smallest event of each cycle
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


def _run_east_of(events: _Events, col: np.ndarray, row: np.ndarray, height: int) -> np.ndarray:
    """For cracks (lattice column, pixel row) with a region on their east: an event of the
    northward run along each, i.e. of the ring that bounds that region there."""
    ends = np.flatnonzero(events.enter == _N)
    key = events.col[ends] * (height + 1) + events.row[ends]
    by_key = np.argsort(key, kind="stable")
    return ends[by_key[np.searchsorted(key[by_key], col * (height + 1) + row, side="right") - 1]]


def _by_value(polygon: np.ndarray, shell: np.ndarray, value: np.ndarray) -> np.ndarray:
    """Renumber polygons by value, then by first pixel (row-major), as `label_components`.

    Shells come in the order of their first vertex, the top-left corner of their region's
    first pixel; a stable sort by value keeps that order within a value.
    """
    rank = np.empty(int(shell.sum()), dtype=np.int64)
    rank[np.argsort(value[shell], kind="stable")] = np.arange(len(rank))
    return rank[polygon]


def _hole_polygons(
    events: _Events,
    ring_of_event: np.ndarray,
    heads: np.ndarray,
    shell: np.ndarray,
    *,
    cracks: np.ndarray,
    shape: tuple[int, int],
) -> np.ndarray:
    """Polygon number (shells in order) of every ring: holes go to their region's shell.

    Above a hole's top-left pixel lies a pixel of its region; the crack where that pixel's
    row of equal pixels begins, to its left, is on a ring of the same region whose top is
    higher. Linking every hole so and following the links (connected components) ends at
    the one shell of the region: no point-in-polygon tests.
    """
    n_rings = len(heads)
    height, width = shape
    polygon = np.full(n_rings, -1, dtype=np.int64)
    shells, holes = np.flatnonzero(shell), np.flatnonzero(~shell)
    polygon[shells] = np.arange(len(shells))
    if not len(holes):
        return polygon
    row = events.row[heads[holes]] - 1
    col = events.col[heads[holes]]
    # the vertical cracks are at lattice x in padded row y + 1
    at = cracks[np.searchsorted(cracks, (row + 1) * (width + 1) + col, side="right") - 1]
    linked = ring_of_event[_run_east_of(events, at % (width + 1), row, height)]
    graph = csr_matrix((np.ones(len(holes), np.int8), (holes, linked)), shape=(n_rings, n_rings))
    n_regions, region = connected_components(graph, directed=True, connection="weak")
    if np.bincount(region[shells], minlength=n_regions).max(initial=0) > 1:
        raise RuntimeError("crack tracing: two shells in one region; this is a bug in geoseg")
    shell_of = np.full(n_regions, -1, dtype=np.int64)
    shell_of[region[shells]] = shells
    owner = shell_of[region[holes]]
    if (owner < 0).any():
        raise RuntimeError("crack tracing: a hole outside every shell; this is a bug in geoseg")
    polygon[holes] = polygon[owner]
    return polygon


@dataclass(frozen=True, eq=False)
class PixelRuns:
    """Every row cut into runs of equal pixels, in row-major order: ``[start, stop)`` of
    ``row``, and the polygon number of the run's region (-1 for nodata)."""

    row: np.ndarray
    start: np.ndarray
    stop: np.ndarray
    region: np.ndarray


@dataclass(frozen=True, eq=False)
class _Traced:
    rings: Rings
    padded: np.ndarray
    cracks: np.ndarray  # flat indices of the vertical cracks, (h + 2) x (w + 1), row-major
    events: _Events
    ring_of_event: np.ndarray


def _pixel_runs(traced: _Traced, nodata: int) -> PixelRuns:
    """Runs start at column 0 and at every crack inside a row; a run's region is that of the
    ring along its starting crack (none for nodata runs)."""
    padded = traced.padded
    height, width = padded.shape[0] - 2, padded.shape[1] - 2
    padded_row, col = np.divmod(traced.cracks, width + 1)
    inside = (col > 0) & (col < width)  # not the cracks on the raster's left or right edge
    inner = (padded_row[inside] - 1) * width + col[inside]  # flat (h, w) index of its pixel
    starts = np.sort(np.concatenate([np.arange(height) * width, inner]))
    row, start = np.divmod(starts, width)
    stop = np.append(start[1:], width)
    stop[np.append(row[1:] != row[:-1], True)] = width
    valid = padded[row + 1, start + 1] != nodata
    region = np.full(len(starts), -1, dtype=np.int64)
    if len(traced.rings):
        ring = traced.ring_of_event[_run_east_of(traced.events, start[valid], row[valid], height)]
        region[valid] = traced.rings.polygon[ring]
    return PixelRuns(row, start, stop, region)


def trace_rings(values: np.ndarray, nodata: int) -> Rings:
    """Every ring of every 4-connected region of equal value (``nodata`` pixels are none).

    ``values`` must be integers: the tracer compares pixels for equality (NaN never equals).
    """
    return _trace(values, nodata).rings


def _trace(values: np.ndarray, nodata: int) -> _Traced:
    values = np.asarray(values)
    if values.ndim != 2 or not np.issubdtype(values.dtype, np.integer):
        raise TypeError(
            f"crack tracing needs a 2-D integer array, got {values.dtype} {values.shape}"
        )
    padded = _padded(values, nodata)
    corners, cracks = _corner_vertices(padded)
    events = _events(padded, corners, nodata)
    if not len(events):
        none = np.empty(0)
        index = none.astype(np.int64)
        rings = Rings(np.empty((0, 2)), index, events.value, none > 0, none, index, none, none)
        return _Traced(rings, padded, cracks, events, index)
    following = _link(events)
    n_rings, cycle = _split_pinches(following, events)
    order, starts = _ring_order(following, cycle, n_rings)
    heads = order[starts]
    ring_of_cycle = np.empty(n_rings, dtype=np.int64)
    ring_of_cycle[cycle[heads]] = np.arange(n_rings)
    xy = np.column_stack([events.col, events.row]).astype(np.float64)
    area = ring_areas(xy, xy[following], cycle, heads)
    shell = area > 0
    # a pixel of each ring's region: at a shell's first vertex, the corner's own pixel; above
    # a hole's first (top-left) vertex, the pixel the hole's top edge borders
    pixel_x = np.where(
        shell, xy[heads, 0] + _QUADRANT_DX[events.quadrant[heads]], xy[heads, 0] + 0.5
    )
    pixel_y = np.where(
        shell, xy[heads, 1] + _QUADRANT_DY[events.quadrant[heads]], xy[heads, 1] - 0.5
    )
    ring_of_event = ring_of_cycle[cycle]
    value = events.value[heads]
    rings = Rings(
        xy=xy[order],
        ring_of_vertex=np.cumsum(starts) - 1,
        value=value,
        shell=shell,
        area=np.abs(area),
        polygon=_by_value(
            _hole_polygons(events, ring_of_event, heads, shell, cracks=cracks, shape=values.shape),
            shell,
            value,
        ),
        pixel_x=pixel_x,
        pixel_y=pixel_y,
    )
    return _Traced(rings, padded, cracks, events, ring_of_event)


def _polygons(rings: Rings, transform: Affine | None) -> tuple[np.ndarray, np.ndarray]:
    if not len(rings):
        return np.empty(0, dtype=object), rings.value
    xy = rings.xy if transform is None else affine_xy(rings.xy, transform)
    linear = shapely.linearrings(xy, indices=rings.ring_of_vertex)
    return assemble_polygons(linear, rings.shell, rings.polygon), rings.polygon_values()


def trace_polygons(
    values: np.ndarray, nodata: int, transform: Affine | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """``(polygons, value of each)``: one polygon per 4-connected region of equal value.

    Coordinates are pixel (col, row) corners, mapped through ``transform`` when given.
    """
    return _polygons(trace_rings(values, nodata), transform)


def _corner_contacts(traced: _Traced) -> tuple[np.ndarray, np.ndarray]:
    """Pairs of polygons of one value that meet only at a corner (diagonal pixels).

    They are the two outer corners across a vertex that the tracer kept apart; a region
    meeting itself there has been split into shell + hole of one polygon instead.
    """
    if not len(traced.rings):
        return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.int64)
    a, b = traced.events.pinches
    polygon = traced.rings.polygon[traced.ring_of_event]
    apart = polygon[a] != polygon[b]
    return polygon[a][apart], polygon[b][apart]


def trace_runs(
    values: np.ndarray, nodata: int
) -> tuple[PixelRuns, np.ndarray, tuple[np.ndarray, np.ndarray]]:
    """`trace_regions` without building polygons: runs, value per region, corner contacts."""
    traced = _trace(values, nodata)
    value = traced.rings.polygon_values()
    return _pixel_runs(traced, nodata), value, _corner_contacts(traced)


def trace_regions(
    values: np.ndarray, nodata: int, transform: Affine | None = None
) -> tuple[np.ndarray, np.ndarray, PixelRuns, tuple[np.ndarray, np.ndarray]]:
    """`trace_polygons` plus which polygon every pixel belongs to, as runs along the rows,
    and the pairs of polygons that touch at corners (the 8-connected joints).

    Per-region sums (pixel counts, confidence) then need no label image.
    """
    traced = _trace(values, nodata)
    polygons, value = _polygons(traced.rings, transform)
    return polygons, value, _pixel_runs(traced, nodata), _corner_contacts(traced)
