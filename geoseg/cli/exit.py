"""End the process without the interpreter's teardown once a command is done.

With torch, timm and GDAL loaded, CPython's finalization (freeing every module's objects one by
one) takes 1-1.5 s on 2 cores, as long as vectorizing a 3072 px scene, for memory the OS frees
at once anyway. So after a command returns, `leave` does what a normal exit does that matters
(the atexit handlers: Dask, Prefect, multiprocessing, tempfile and logging cleanups; flushing
stdout and stderr) and ends the process with ``os._exit`` and the command's exit code.

It returns instead, for the normal exit, when that would skip something: another non-daemon
thread still running (the interpreter would join it), a tracer or profiler active (coverage and
cProfile write their data after the script returns), or ``GEOSEG_FAST_EXIT=0``.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import sys
import threading

FAST_EXIT_ENV = "GEOSEG_FAST_EXIT"


def fast_exit_safe() -> bool:
    """Whether skipping the interpreter's finalization loses nothing (see the module doc)."""
    if os.environ.get(FAST_EXIT_ENV, "1") == "0":
        return False
    if sys.gettrace() is not None or sys.getprofile() is not None:
        return False
    main = threading.main_thread()
    return all(t is main or t.daemon or not t.is_alive() for t in threading.enumerate())


def leave(code: int) -> None:
    """Run the atexit handlers, flush stdio and ``os._exit(code)``; return if not safe."""
    if not fast_exit_safe():
        return
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        # a closed pipe (`geoseg … | head`) or a closed stream: nothing left to flush into
        with contextlib.suppress(OSError, ValueError):
            stream.flush()
    os._exit(code)
