"""Output folders after faults: stale temp entries of killed runs, and full-disk diagnosis."""

from __future__ import annotations

import errno
import os
import resource
import signal
import subprocess
from pathlib import Path

import pytest

from geoseg.errors import OutputError, SceneError
from geoseg.io.outputs import disk_full_error, pid_alive, remove_stale_entries


def dead_pid() -> int:
    """The id of a process that has exited and been reaped."""
    proc = subprocess.Popen(["true"])
    proc.wait()
    assert not pid_alive(proc.pid)
    return proc.pid


def test_stale_entries_of_dead_runs_are_removed_live_ones_kept(tmp_path: Path) -> None:
    dead, alive = dead_pid(), os.getpid()
    (tmp_path / f".scene.partial-{dead}").mkdir()
    (tmp_path / f".scene.partial-{dead}" / "classes.raw.tif").write_bytes(b"half")
    (tmp_path / f".run.json.partial-{dead}").write_text("{")
    (tmp_path / f".other.partial-{alive}").mkdir()  # a run still writing: left alone
    (tmp_path / f".kept.old-{dead}").mkdir()  # killed between two renames: put back
    (tmp_path / f".kept.old-{dead}" / "classes.tif").write_bytes(b"earlier")
    (tmp_path / "scene").mkdir()
    (tmp_path / ".hidden.partial-notapid").write_text("not ours")
    handled = remove_stale_entries(tmp_path)
    assert len(handled) == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [f".other.partial-{alive}", "kept", "scene", ".hidden.partial-notapid"]
    )
    assert (tmp_path / "kept" / "classes.tif").read_bytes() == b"earlier"


def test_no_space_and_file_too_large_become_output_errors(tmp_path: Path) -> None:
    final, partial = tmp_path / "scene", tmp_path / ".scene.partial-1"
    for code in (errno.ENOSPC, errno.EFBIG):
        error = disk_full_error(OSError(code, os.strerror(code)), final=final, partial=partial)
        assert isinstance(error, OutputError)
        assert str(error).startswith(f"{final}: disk full or file too large")
    wrapped = OutputError("cannot write the COG (database or disk is full)")
    assert disk_full_error(wrapped, final=final, partial=partial) is not None


def test_other_failures_are_not_called_disk_full(tmp_path: Path) -> None:
    final, partial = tmp_path / "scene", tmp_path / ".scene.partial-1"
    assert disk_full_error(RuntimeError("boom"), final=final, partial=partial) is None
    assert disk_full_error(SceneError("no space left"), final=final, partial=partial) is None
    assert disk_full_error(KeyboardInterrupt(), final=final, partial=partial) is None


def test_a_file_stopped_at_the_size_limit_is_recognized(tmp_path: Path) -> None:
    """GDAL's message for EFBIG ("Write error at scanline 0") does not say why; the file
    that stopped growing at RLIMIT_FSIZE does."""
    partial = tmp_path / ".scene.partial-1"
    partial.mkdir()
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    limit = 64 * 1024
    previous = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG instead of a core dump
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, hard))
    try:
        with pytest.raises(OSError) as raised, (partial / "raw.tif").open("wb") as f:
            f.write(b"x" * (limit + 1))
            f.flush()
        assert raised.value.errno == errno.EFBIG
        gdal_like = RuntimeError("TIFFAppendToStrip:Write error at scanline 0")
        error = disk_full_error(gdal_like, final=tmp_path / "scene", partial=partial)
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, previous)
    assert error is not None and "file size limit is 65536 bytes" in str(error)
    assert disk_full_error(gdal_like, final=tmp_path / "scene", partial=partial) is None
