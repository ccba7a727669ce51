"""Pixel-centre geometry of a render window: sub-windows around objects, clamped line distances.

Distances are clamped to CAP px and only nearby segments are visited, so a value never depends
on how the scene is cut into windows.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from geoseg.synthetic.spec import CAP, Polyline


def sub_window(
    rows: np.ndarray, cols: np.ndarray, box: tuple[float, float, float, float]
) -> tuple[np.ndarray, np.ndarray, slice, slice] | None:
    """The part of the window that may hold pixel centres in box = (r0, r1, c0, c1), or None.

    Pixels left out certainly have their centre outside the box.
    """
    r0, r1, c0, c1 = box
    ra = max(0, math.floor(r0) - int(rows[0]))
    rb = min(rows.size, math.ceil(r1) + 1 - int(rows[0]))
    ca = max(0, math.floor(c0) - int(cols[0]))
    cb = min(cols.size, math.ceil(c1) + 1 - int(cols[0]))
    if ra >= rb or ca >= cb:
        return None
    return rows[ra:rb], cols[ca:cb], slice(ra, rb), slice(ca, cb)


def polyline_distance(lines: Sequence[Polyline], rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """Signed distance (px) to the union of variable-width polylines, clamped to <= CAP.

    Only segments whose padded bounding box touches the window are visited, each on its own
    sub-window; a skipped segment is provably farther than CAP, so the clamp makes the result
    independent of the window.
    """
    dist = np.full((rows.size, cols.size), CAP, np.float64)
    for line in lines:
        pr, pc = np.asarray(line.rows), np.asarray(line.cols)
        hw = np.asarray(line.half_widths_px)
        pad = CAP + np.maximum(hw[:-1], hw[1:])
        lo_r, hi_r = np.minimum(pr[:-1], pr[1:]) - pad, np.maximum(pr[:-1], pr[1:]) + pad
        lo_c, hi_c = np.minimum(pc[:-1], pc[1:]) - pad, np.maximum(pc[:-1], pc[1:]) + pad
        touching = (
            (hi_r >= rows[0]) & (lo_r <= rows[-1] + 1) & (hi_c >= cols[0]) & (lo_c <= cols[-1] + 1)
        )
        for s in np.flatnonzero(touching):
            sub = sub_window(rows, cols, (lo_r[s], hi_r[s], lo_c[s], hi_c[s]))
            if sub is None:
                continue
            rs, cs, r_sl, c_sl = sub
            d = _segment_distance(
                rs, cs, (pr[s], pc[s]), (pr[s + 1], pc[s + 1]), (hw[s], hw[s + 1])
            )
            np.minimum(dist[r_sl, c_sl], d, out=dist[r_sl, c_sl])
    return dist


def _segment_distance(
    rows: np.ndarray,
    cols: np.ndarray,
    start: tuple[float, float],
    end: tuple[float, float],
    half_widths: tuple[float, float],
) -> np.ndarray:
    """Distance from pixel centres to a segment minus the half-width interpolated along it.

    `start` and `end` are (row, col) in px, `half_widths` the half-widths at start and end.
    """
    y = (rows.astype(np.float64) + 0.5 - start[0])[:, None]
    x = (cols.astype(np.float64) + 0.5 - start[1])[None, :]
    dr, dc = end[0] - start[0], end[1] - start[1]
    t = np.clip((y * dr + x * dc) / (dr * dr + dc * dc), 0.0, 1.0)
    ey, ex = y - t * dr, x - t * dc
    hw0, hw1 = half_widths
    return np.sqrt(ey * ey + ex * ex) - (hw0 + t * (hw1 - hw0))


def near(dist: np.ndarray) -> tuple[slice, slice] | None:
    """Bounding box of the pixels closer than CAP to a line layer, or None if there are none.

    Outside it every pixel sits at the clamp, where the layer is certainly absent, so painting
    only inside the box changes no value.
    """
    close = dist < CAP
    row_any, col_any = close.any(axis=1), close.any(axis=0)
    if not row_any.any():
        return None
    r = np.flatnonzero(row_any)
    c = np.flatnonzero(col_any)
    return slice(int(r[0]), int(r[-1]) + 1), slice(int(c[0]), int(c[-1]) + 1)
