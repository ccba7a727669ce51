"""Integer hashing and value noise: every random value is a pure function of integer coordinates.

A splitmix64 finalizer in numpy uint64 arithmetic hashes pixel or lattice coordinates with a
per-field salt; value noise interpolates lattice hashes with a smoothstep and fbm sums octaves.
No sequential random stream is used, so any window of a noise field equals the same crop of
the whole field.
"""

from __future__ import annotations

import numpy as np

_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_GOLDEN = 0x9E3779B97F4A7C15


def mix(x: np.ndarray) -> np.ndarray:
    """splitmix64 finalizer: a bijective, well-mixing uint64 -> uint64 hash."""
    x = x ^ (x >> np.uint64(30))
    x = x * _M1
    x = x ^ (x >> np.uint64(27))
    x = x * _M2
    return x ^ (x >> np.uint64(31))


def salt(seed: int, tag: int) -> np.uint64:
    """A 64-bit salt for one noise field, from the scene seed and a field tag."""
    key = np.array([(seed * _GOLDEN + tag * 0xD1B54A32D192ED03) & 0xFFFFFFFFFFFFFFFF], np.uint64)
    return mix(key)[0]


def hash2(i: np.ndarray, j: np.ndarray, salt: np.uint64) -> np.ndarray:
    """Hash of integer coordinate pairs (broadcast), salted; negative coordinates are fine."""
    iu = np.asarray(i, np.int64).view(np.uint64)
    ju = np.asarray(j, np.int64).view(np.uint64) & np.uint64(0xFFFFFFFF)
    return mix((iu << np.uint64(32)) ^ ju ^ salt)


def unit(h: np.ndarray, shift: int = 0, bits: int = 16) -> np.ndarray:
    """`bits` bits of a hash, starting at bit `shift`, as float32 in [0, 1)."""
    mask = np.uint64((1 << bits) - 1)
    return ((h >> np.uint64(shift)) & mask).astype(np.float32) * np.float32(1.0 / (1 << bits))


def value_noise(rows: np.ndarray, cols: np.ndarray, cell_px: float, salt: np.uint64) -> np.ndarray:
    """Smooth hash-lattice noise in [0, 1) on the pixel grid rows x cols, lattice step cell_px.

    Lattice values are hashes of lattice indices; pixels interpolate them with a smoothstep,
    first along rows then along columns. Each pixel only depends on its own coordinates.
    """
    i0, wy = _lattice_coords(rows, cell_px)
    j0, wx = _lattice_coords(cols, cell_px)
    ilo, jlo = int(i0.min()), int(j0.min())
    li = np.arange(ilo, int(i0.max()) + 2)
    lj = np.arange(jlo, int(j0.max()) + 2)
    lattice = unit(hash2(li[:, None], lj[None, :], salt), 16, 24)
    top = lattice[i0 - ilo]
    bottom = lattice[i0 - ilo + 1]
    along_rows = top + (bottom - top) * wy[:, None]
    left = along_rows[:, j0 - jlo]
    right = along_rows[:, j0 - jlo + 1]
    return left + (right - left) * wx[None, :]


def _lattice_coords(pixels: np.ndarray, cell_px: float) -> tuple[np.ndarray, np.ndarray]:
    """Lattice index and smoothstep weight (float32) of pixel centres for one axis."""
    x = (pixels.astype(np.float64) + 0.5) / cell_px
    i = np.floor(x)
    f = (x - i).astype(np.float32)
    return i.astype(np.int64), f * f * (np.float32(3.0) - np.float32(2.0) * f)


def fbm(
    rows: np.ndarray, cols: np.ndarray, cell_px: float, *, seed: int, tag: int, octaves: int = 3
) -> np.ndarray:
    """Fractal sum of value-noise octaves (halving cell, halving weight), normalised to [0, 1)."""
    total = np.zeros((rows.size, cols.size), np.float32)
    weight_sum = 0.0
    for k in range(octaves):
        weight = 0.5**k
        total += np.float32(weight) * value_noise(rows, cols, cell_px / 2**k, salt(seed, tag + k))
        weight_sum += weight
    return total * np.float32(1.0 / weight_sum)


def pixel_hash(rows: np.ndarray, cols: np.ndarray, salt: np.uint64) -> np.ndarray:
    """One uint64 hash per pixel of the rows x cols grid."""
    return hash2(rows[:, None], cols[None, :], salt)
