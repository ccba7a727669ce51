"""Keep the CPU forward's large activations on the heap instead of fresh mmaps.

glibc serves an allocation above its mmap threshold (128 KB, rising to at most 32 MB as big
blocks are freed) with a fresh ``mmap`` and returns it with ``munmap`` on free, and trims the
heap's top back to the OS above 128 KB. A U-Net forward on 4 x 512 px tiles allocates and frees
activations of tens of MB per layer, so every batch page-faults hundreds of MB in anew: a third
of the demo model's CPU forward on 2 cores (bare forward 3.7-4.1 Mpx/s, 6.0-6.4 with the
thresholds below). With both thresholds raised, freed activations stay mapped and are reused
by the next batch; the peak (the largest live set) is unchanged, and memory is only not
returned to the OS between batches.

The setting is process-wide (``mallopt``), made once when a model is put on the CPU; it is a
no-op where the C library is not glibc.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools

M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
LARGE_BYTES = 1 << 30
"""Both thresholds: allocations up to 1 GiB come from the heap, and it is trimmed above 1 GiB."""


@functools.cache
def keep_large_allocations() -> bool:
    """Raise glibc's mmap and trim thresholds to `LARGE_BYTES`; whether both were accepted."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (musl, macOS, Windows): nothing to tune
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    mmap_ok = mallopt(M_MMAP_THRESHOLD, LARGE_BYTES) == 1
    trim_ok = mallopt(M_TRIM_THRESHOLD, LARGE_BYTES) == 1
    return mmap_ok and trim_ok
