"""A worker thread that runs one function on submitted items in order, with a bounded queue.

`predict_scene` runs its blending and its writing each in one: the bounded queue holds the
producer back (memory stays bounded), and an error in the thread surfaces in the caller.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from typing import Any


class BackgroundWorker:
    """Runs ``fn(item)`` for submitted items in one thread, in order, at most ``depth`` queued.

    An error in the thread is re-raised in the caller at the next `submit` or at `close`.
    """

    _STOP = object()

    def __init__(self, fn: Callable[[Any], None], depth: int = 2, name: str = "geoseg-writer"):
        self._fn = fn
        self._queue: queue.Queue[object] = queue.Queue(maxsize=depth)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while (item := self._queue.get()) is not self._STOP:
            if self._error is None:
                try:
                    self._fn(item)
                except BaseException as exc:
                    self._error = exc

    def submit(self, item: object) -> None:
        self._raise_if_failed()
        self._queue.put(item)

    def close(self) -> None:
        """Wait for queued items to finish; re-raise the worker's error, if any (idempotent)."""
        if self._thread.is_alive():
            self._queue.put(self._STOP)
            self._thread.join()
        self._raise_if_failed()

    def _raise_if_failed(self) -> None:
        if self._error is not None:
            raise self._error
