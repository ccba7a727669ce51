"""BackgroundWorker: items in order in its own thread, its error re-raised in the caller."""

from __future__ import annotations

import threading

import pytest

from geoseg.inference.background import BackgroundWorker


def test_items_run_in_order_in_one_named_thread() -> None:
    seen: list[tuple[int, str]] = []
    worker = BackgroundWorker(
        lambda item: seen.append((item, threading.current_thread().name)), depth=1, name="w-test"
    )
    for i in range(20):
        worker.submit(i)
    worker.close()
    assert seen == [(i, "w-test") for i in range(20)]
    assert not any(t.name == "w-test" for t in threading.enumerate())
    worker.close()  # idempotent


def test_an_error_in_the_thread_is_raised_at_submit_or_close() -> None:
    done: list[int] = []
    release = threading.Event()

    def work(item: int) -> None:
        if item == 1:
            release.wait(10)
            raise ValueError("item 1 failed")
        done.append(item)

    worker = BackgroundWorker(work, depth=4)
    worker.submit(0)
    worker.submit(1)
    worker.submit(2)  # queued behind the failing item: skipped once it has failed
    release.set()
    with pytest.raises(ValueError, match="item 1 failed"):
        worker.close()
    with pytest.raises(ValueError, match="item 1 failed"):
        worker.submit(3)
    with pytest.raises(ValueError, match="item 1 failed"):
        worker.close()  # still failed: every later call says so
    assert done == [0]
