"""Outputs whole or not at all: staged folders, stale temp entries of killed runs, full disks."""

from __future__ import annotations

import errno
import os
import resource
import signal
import subprocess
from pathlib import Path

import pytest

from geoseg.errors import OutputError, SceneError
from geoseg.io.staging import (
    disk_full_error,
    pid_alive,
    remove_stale_entries,
    staged_folder,
    temp_name,
    written_atomically,
)


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
    final = tmp_path / "scene"
    for code in (errno.ENOSPC, errno.EFBIG):
        error = disk_full_error(OSError(code, os.strerror(code)), final=final)
        assert isinstance(error, OutputError)
        assert str(error).startswith(f"{final}: disk full or file too large")
    wrapped = OutputError("cannot write the COG (database or disk is full)")
    assert disk_full_error(wrapped, final=final) is not None


def test_other_failures_are_not_called_disk_full(tmp_path: Path) -> None:
    final = tmp_path / "scene"
    assert disk_full_error(RuntimeError("boom"), final=final) is None
    assert disk_full_error(SceneError("no space left"), final=final) is None
    assert disk_full_error(KeyboardInterrupt(), final=final) is None
    assert not list(tmp_path.iterdir())  # the write probe is gone


def test_a_vague_write_error_under_a_file_size_limit_is_recognized(tmp_path: Path) -> None:
    """GDAL's message for EFBIG ("Write error at scanline 0") does not say why; a probe
    write in the output folder does."""
    vague = RuntimeError("TIFFAppendToStrip:Write error at scanline 0")
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    previous = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG instead of a core dump
    resource.setrlimit(resource.RLIMIT_FSIZE, (64 * 1024, hard))
    try:
        error = disk_full_error(vague, final=tmp_path / "scene")
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, previous)
    assert error is not None and "file size limit is 65536 bytes" in str(error)
    assert disk_full_error(vague, final=tmp_path / "scene") is None
    assert not list(tmp_path.iterdir())


def test_a_staged_folder_is_published_whole_replacing_the_old_result(tmp_path: Path) -> None:
    final = tmp_path / "scene"
    final.mkdir()
    (final / "old.tif").write_text("old")
    with staged_folder(final) as folder:
        assert folder == temp_name(final) and folder.name.startswith(".scene.partial-")
        (folder / "classes.tif").write_text("new")
        assert (final / "old.tif").is_file()  # the old result stays until the new one is whole
    assert sorted(p.name for p in final.iterdir()) == ["classes.tif"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["scene"]  # no temp or old entries


def test_a_failed_stage_leaves_the_earlier_result_and_no_temp_folder(tmp_path: Path) -> None:
    final = tmp_path / "scene"
    final.mkdir()
    (final / "classes.tif").write_text("earlier")
    with pytest.raises(RuntimeError, match="boom"), staged_folder(final) as folder:
        (folder / "classes.tif").write_text("half")
        raise RuntimeError("boom")
    assert (final / "classes.tif").read_text() == "earlier"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["scene"]


def test_a_full_disk_while_staging_names_the_final_folder(tmp_path: Path) -> None:
    final = tmp_path / "scene"
    with pytest.raises(OutputError, match=r"scene: disk full"), staged_folder(final):
        raise OSError(errno.ENOSPC, "No space left on device")
    assert not final.exists() and not list(tmp_path.iterdir())


def test_a_file_written_atomically_is_the_old_one_or_the_new_one(tmp_path: Path) -> None:
    final = tmp_path / "run.json"
    final.write_text("old")
    with pytest.raises(RuntimeError, match="boom"), written_atomically(final) as tmp:
        tmp.write_text("half")
        raise RuntimeError("boom")
    assert final.read_text() == "old" and sorted(tmp_path.iterdir()) == [final]
    with written_atomically(final) as tmp:
        assert tmp == temp_name(final)
        tmp.write_text("new")
        assert final.read_text() == "old"  # replaced only when the block completes
    assert final.read_text() == "new" and sorted(tmp_path.iterdir()) == [final]
