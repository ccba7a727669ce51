"""Crack tracing: polygons of 4-connected regions of equal value, built with array operations.

Each region becomes one polygon whose rings run along the pixel edges ("cracks") with a vertex
only where they turn: exactly the polygons of GDAL's polygonizer (``gdal_polygonize.py``,
``rasterio.features.shapes``), vertex for vertex, about twice as fast and with no Python
object per feature. `trace_regions` also tells which region every run of equal pixels along a
row belongs to, so per-region sums need no label image. The steps, in `_trace`: the turns at
corner vertices (`geoseg.vectorize.lattice`), runs between them linked into rings (`_link`),
rings through a vertex twice split (`_split_pinches`), holes given to their shells
(`_hole_polygons`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import shapely
from affine import Affine
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import connected_components

from geoseg.geo.scene import affine_xy
from geoseg.vectorize.lattice import (
    DIAGONALS,
    EVENTS,
    QUADRANT_DX,
    QUADRANT_DY,
    E,
    N,
    S,
    W,
    pattern_codes,
)
from geoseg.vectorize.rings import assemble_polygons, cycles, ring_areas, ring_order


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


def _events(padded: np.ndarray, vertices: np.ndarray, nodata: int) -> _Events:
    """The events of the corner vertices, in vertex order (row-major), via the pattern table."""
    width = padded.shape[1]
    row, col = np.divmod(vertices, width - 1)
    top_left = row * width + col
    flat = padded.ravel()
    quad = np.stack(
        [flat[top_left], flat[top_left + 1], flat[top_left + width], flat[top_left + width + 1]]
    )
    code = pattern_codes(quad, nodata)
    count = EVENTS.count[code].astype(np.int64)
    first = np.cumsum(count) - count
    vertex = np.repeat(np.arange(len(vertices)), count)
    slot = np.arange(len(vertex)) - first[vertex]
    code_of = code[vertex]
    quadrant = EVENTS.quadrant[code_of, slot]
    pinch_a, pinch_b = [], []
    for k in range(len(DIAGONALS)):
        at = np.flatnonzero(EVENTS.pinch[code, k, 0] >= 0)
        pinch_a.append(first[at] + EVENTS.pinch[code[at], k, 0])
        pinch_b.append(first[at] + EVENTS.pinch[code[at], k, 1])
    return _Events(
        row=row[vertex],
        col=col[vertex],
        quadrant=quadrant,
        enter=EVENTS.enter[code_of, slot],
        leave=EVENTS.leave[code_of, slot],
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
    for direction in (E, W, S, N):
        starts = np.flatnonzero(events.leave == direction)
        ends = np.flatnonzero(events.enter == direction)
        if direction in (S, N):
            starts = starts[np.argsort(column[starts], kind="stable")]
            ends = ends[np.argsort(column[ends], kind="stable")]
        if len(starts) != len(ends):
            raise RuntimeError("crack tracing: unbalanced runs; this is a bug in geoseg")
        following[starts] = ends
    return following


def _split_pinches(following: np.ndarray, events: _Events) -> tuple[int, np.ndarray]:
    """Split rings that pass one vertex twice (a region meeting itself diagonally).

    Swapping the successors of two events of one cycle splits it in two; two same-value
    outer corners across a vertex are on one ring exactly when they are one region's.
    """
    n_rings, ring = cycles(following)
    a, b = events.pinches
    same = ring[a] == ring[b]
    if same.any():
        a, b = a[same], b[same]
        following[a], following[b] = following[b], following[a]
        n_rings, ring = cycles(following)
    return n_rings, ring


def _run_east_of(events: _Events, col: np.ndarray, row: np.ndarray, height: int) -> np.ndarray:
    """For cracks (lattice column, pixel row) with a region on their east: an event of the
    northward run along each, i.e. of the ring that bounds that region there."""
    ends = np.flatnonzero(events.enter == N)
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
    order, starts = ring_order(following, cycle, n_rings)
    heads = order[starts]
    ring_of_cycle = np.empty(n_rings, dtype=np.int64)
    ring_of_cycle[cycle[heads]] = np.arange(n_rings)
    xy = np.column_stack([events.col, events.row]).astype(np.float64)
    area = ring_areas(xy, xy[following], cycle, heads)
    shell = area > 0
    # a pixel of each ring's region: at a shell's first vertex, the corner's own pixel; above
    # a hole's first (top-left) vertex, the pixel the hole's top edge borders
    pixel_x = np.where(
        shell, xy[heads, 0] + QUADRANT_DX[events.quadrant[heads]], xy[heads, 0] + 0.5
    )
    pixel_y = np.where(
        shell, xy[heads, 1] + QUADRANT_DY[events.quadrant[heads]], xy[heads, 1] - 0.5
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
