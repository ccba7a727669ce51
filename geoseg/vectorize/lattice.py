"""The pixel-corner lattice: directions of travel, and which boundaries turn at a vertex.

The four pixels around a vertex, which of them are equal and which are nodata, make a pattern
code; `EVENTS` lists for every code the boundaries that turn there (one *event* each: the
pixel whose corner it turns round, the direction in and the direction out). Boundaries are
walked with their region on the right. The table is built once, at import.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

# Directions of travel on the lattice (rows grow downwards) and the four pixels round a vertex.
E, S, W, N = range(4)
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
_CONVEX = {_TL: (S, W), _TR: (W, N), _BR: (N, E), _BL: (E, S)}
_CONCAVE = {_BR: (E, N), _BL: (S, E), _TL: (W, S), _TR: (N, W)}
_PAIRS = ((_TL, _TR), (_TL, _BL), (_TL, _BR), (_TR, _BL), (_TR, _BR), (_BL, _BR))
DIAGONALS = ((_TL, _BR), (_TR, _BL))
"""The two diagonals of a vertex's four pixels (the pinch slots of `EventTable`)."""
QUADRANT_DX = np.array([-0.5, 0.5, -0.5, 0.5])
"""Column of each quadrant's pixel centre relative to the vertex."""
QUADRANT_DY = np.array([-0.5, -0.5, 0.5, 0.5])
"""Row of each quadrant's pixel centre relative to the vertex."""
_N_CODES = 1 << (len(_PAIRS) + 4)


@dataclass(frozen=True, eq=False)
class EventTable:
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


def pattern_codes(quad: np.ndarray, nodata: int) -> np.ndarray:
    """The pattern code of each vertex from its four pixels ``quad`` (4, n): TL, TR, BL, BR."""
    code = np.zeros(quad.shape[1], np.int16)
    for bit, (i, j) in enumerate(_PAIRS):
        code |= (quad[i] == quad[j]).astype(np.int16) << bit
    for q in range(4):
        code |= (quad[q] != nodata).astype(np.int16) << (len(_PAIRS) + q)
    return code


def _vertex_events(v: tuple[int, ...], valid: tuple[bool, ...]) -> list[tuple[int, int, int]]:
    """(quadrant, enter, leave) of every boundary turning at a vertex with pixels ``v``."""
    events = []
    for q in range(4):
        if not valid[q]:
            continue
        horizontal, vertical, diagonal = _NEIGHBOURS[q]
        if v[q] != v[horizontal] and v[q] != v[vertical]:
            events.append((q, *_CONVEX[q]))
        elif v[q] == v[horizontal] == v[vertical] != v[diagonal]:
            events.append((q, *_CONCAVE[q]))
    return events


def _build_event_table() -> EventTable:
    """Enumerate every equality pattern of four pixels (with nodata) once, at import."""
    count = np.zeros(_N_CODES, np.int8)
    quadrant, enter, leave = (np.zeros((_N_CODES, 4), np.int8) for _ in range(3))
    pinch = np.full((_N_CODES, 2, 2), -1, np.int8)
    for values in itertools.product(range(4), repeat=4):
        for valid in itertools.product((False, True), repeat=4):
            v = tuple(values[q] if valid[q] else -1 for q in range(4))
            code = _pattern_code(v, valid)
            events = _vertex_events(v, valid)
            count[code] = len(events)
            for slot, (q, a, b) in enumerate(events):
                quadrant[code, slot], enter[code, slot], leave[code, slot] = q, a, b
            convex = [q for q, a, b in events if (a, b) == _CONVEX[q]]
            for k, (a, b) in enumerate(DIAGONALS):
                if a in convex and b in convex and v[a] == v[b]:
                    slots = [q for q, *_ in events]
                    pinch[code, k] = (slots.index(a), slots.index(b))
    return EventTable(count, quadrant, enter, leave, pinch)


EVENTS = _build_event_table()
"""The event table of every 2x2 pattern code (see `pattern_codes`)."""
