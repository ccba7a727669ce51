"""Tests for geoseg.synthetic.noise: hashes and noise fields are pure functions of position."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from geoseg.synthetic.noise import fbm, hash2, mix, pixel_hash, salt, unit, value_noise


@settings(max_examples=60, deadline=None)
@given(
    row0=st.integers(-300, 300),
    col0=st.integers(-300, 300),
    data=st.data(),
    cell_px=st.sampled_from([2.3, 5.0, 7.0, 40.0, 150.0]),
)
def test_noise_window_equals_crop_of_larger_grid(
    row0: int, col0: int, data: st.DataObject, cell_px: float
) -> None:
    rows = np.arange(row0, row0 + 120, dtype=np.int64)
    cols = np.arange(col0, col0 + 90, dtype=np.int64)
    r0, c0 = data.draw(st.integers(0, 119)), data.draw(st.integers(0, 89))
    r1, c1 = data.draw(st.integers(r0 + 1, 120)), data.draw(st.integers(c0 + 1, 90))
    full = value_noise(rows, cols, cell_px, salt(3, 13))
    assert full.dtype == np.float32 and (full >= 0).all() and (full < 1).all()
    np.testing.assert_array_equal(
        value_noise(rows[r0:r1], cols[c0:c1], cell_px, salt(3, 13)), full[r0:r1, c0:c1]
    )
    total = fbm(rows, cols, cell_px, seed=3, tag=20, octaves=3)
    assert (total >= 0).all() and (total < 1).all()
    np.testing.assert_array_equal(
        fbm(rows[r0:r1], cols[c0:c1], cell_px, seed=3, tag=20, octaves=3), total[r0:r1, c0:c1]
    )


def test_hashes_are_deterministic_salted_and_spread() -> None:
    x = np.arange(10_000, dtype=np.uint64)
    assert np.unique(mix(x)).size == x.size  # a bijection: no collisions
    assert salt(1, 2) == salt(1, 2) and salt(1, 2) != salt(2, 2) and salt(1, 2) != salt(1, 3)
    rows, cols = np.arange(-20, 20, dtype=np.int64), np.arange(-5, 30, dtype=np.int64)
    h = pixel_hash(rows, cols, salt(0, 70))
    np.testing.assert_array_equal(h, hash2(rows[:, None], cols[None, :], salt(0, 70)))
    assert np.unique(h).size == h.size
    u = unit(h, 16, 8)
    assert u.dtype == np.float32 and (u >= 0).all() and (u < 1).all()
    assert 0.4 < float(u.mean()) < 0.6
