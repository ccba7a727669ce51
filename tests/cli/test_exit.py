"""The console script's exit without interpreter teardown: what a normal exit does still happens."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

from geoseg.cli.exit import FAST_EXIT_ENV


def _child(body: str, **env: str) -> subprocess.CompletedProcess[str]:
    """Run ``body`` in a fresh interpreter; its exit code and output."""
    script = textwrap.dedent(body)
    return subprocess.run(
        [sys.executable, "-c", script],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
        env={**_base_env(), **env},
    )


def _base_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k != FAST_EXIT_ENV}


LEAVE_3 = """
    import atexit, sys
    from geoseg.cli.exit import leave

    class Tracked:
        def __del__(self):
            print("finalized", flush=True)  # only a full interpreter teardown runs this

    keep = Tracked()
    atexit.register(lambda: print("atexit ran"))
    sys.stdout.write("unflushed line\\n")  # buffered: leave must flush it
    leave(3)
    print("returned")
"""


def test_leave_runs_atexit_flushes_and_keeps_the_exit_code() -> None:
    done = _child(LEAVE_3)
    assert done.returncode == 3, done.stderr
    assert done.stdout.splitlines() == ["unflushed line", "atexit ran"]


def test_leave_returns_when_disabled_by_the_environment() -> None:
    done = _child(LEAVE_3, **{FAST_EXIT_ENV: "0"})
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[:2] == ["unflushed line", "returned"]
    assert "atexit ran" in lines and "finalized" in lines


def test_leave_returns_while_another_thread_must_be_joined() -> None:
    done = _child(
        """
        import threading, time
        from geoseg.cli.exit import leave

        worker = threading.Thread(target=lambda: (time.sleep(0.5), print("worker done")))
        worker.start()
        leave(4)
        print("returned")
        """
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["returned", "worker done"]


def test_leave_returns_under_a_profiler() -> None:
    done = _child(
        """
        import sys
        from geoseg.cli.exit import leave

        sys.setprofile(lambda *a: None)
        leave(5)
        sys.setprofile(None)
        print("returned")
        """
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "returned"


def test_console_script_exit_codes_survive(tmp_path: Path) -> None:
    exe = Path(sys.executable).with_name("geoseg")
    ok = subprocess.run([exe, "--help"], check=False, capture_output=True, text=True, timeout=60)
    assert ok.returncode == 0 and "Usage" in ok.stdout
    bad = subprocess.run(
        [exe, "run", "--aoi", str(tmp_path / "none.geojson"), "--scenes", "x.tif",
         "--model", "m.geoseg", "--out", str(tmp_path / "out")],
        check=False, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert bad.returncode == 2
    assert "AOI file not found" in bad.stderr
