"""Tests for geoseg.synthetic.geometry: clamped line distances do not depend on the window."""

from __future__ import annotations

import numpy as np

from geoseg.synthetic import make_spec
from geoseg.synthetic.geometry import near, polyline_distance, sub_window
from geoseg.synthetic.spec import CAP


def test_polyline_distance_of_a_window_equals_crop_of_full_grid() -> None:
    spec = make_spec(300, 420, seed=11)
    rows, cols = np.arange(300, dtype=np.int64), np.arange(420, dtype=np.int64)
    for lines in (spec.rivers, spec.roads):
        full = polyline_distance(lines, rows, cols)
        assert full.max() <= CAP and full.min() < 0  # clamped, and some pixels on a line
        for r0, r1, c0, c1 in [(0, 1, 0, 1), (17, 81, 33, 113), (150, 300, 200, 420)]:
            window = polyline_distance(lines, rows[r0:r1], cols[c0:c1])
            np.testing.assert_array_equal(window, full[r0:r1, c0:c1])


def test_sub_window_and_near() -> None:
    rows, cols = np.arange(100, 150, dtype=np.int64), np.arange(10, 40, dtype=np.int64)
    assert sub_window(rows, cols, (0.0, 50.0, 0.0, 100.0)) is None
    rs, cs, r_sl, c_sl = sub_window(rows, cols, (120.2, 130.7, 0.0, 15.5))
    np.testing.assert_array_equal(rs, np.arange(120, 132))
    np.testing.assert_array_equal(cs, np.arange(10, 17))
    assert (r_sl, c_sl) == (slice(20, 32), slice(0, 7))
    dist = np.full((50, 30), CAP)
    assert near(dist) is None
    dist[5:8, 12] = 1.0
    assert near(dist) == (slice(5, 8), slice(12, 13))
