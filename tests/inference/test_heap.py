"""glibc thresholds: a freed large block is reused without page faults once they are raised."""

from __future__ import annotations

import json
import platform
import subprocess
import sys
import textwrap

import pytest

from geoseg.inference.heap import keep_large_allocations

CHILD = """
    import json, resource, sys
    import numpy as np
    from geoseg.inference.heap import keep_large_allocations

    tuned = keep_large_allocations() if sys.argv[1] == "tuned" else None
    block = np.ones(64 << 20, dtype=np.uint8)  # 64 MiB, touched
    del block
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    block = np.ones(64 << 20, dtype=np.uint8)  # the same size again, touched
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
    print(json.dumps({"tuned": tuned, "faults": faults}))
"""


def _faults(mode: str) -> dict:
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(CHILD), mode],
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's mallopt only")
def test_a_freed_large_block_is_reused_without_page_faults() -> None:
    default, tuned = _faults("default"), _faults("tuned")
    assert tuned["tuned"] is True
    # a fresh mmap faults every page in again: at least one fault per 2 MiB even with
    # transparent huge pages (numpy asks for them on large arrays), 16384 with 4 KiB pages
    assert default["faults"] >= (64 << 20) // (2 << 20)
    assert tuned["faults"] < max(8, default["faults"] // 10)  # the freed block, still mapped


def test_the_setting_is_made_once() -> None:
    assert keep_large_allocations() is keep_large_allocations()
