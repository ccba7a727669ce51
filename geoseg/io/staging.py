"""Outputs appear whole or not at all: staged folders, atomic publishing, and faults.

A run writes each result under a hidden temp name (``.NAME.partial-PID``) and renames it when
complete (`staged_folder` and `publish_folder` for folders, `written_atomically` for files), so
a crash never leaves a half result under a final name. Two faults still need handling here:

- a run killed outright (SIGKILL, power loss) cannot remove its temp entries; the next run in
  the folder removes those whose process is gone (`remove_stale_entries`);
- a full disk (or a file-size limit) makes GDAL, SQLite or Python fail with messages that often
  do not say why (libtiff: "Write error at scanline 0"); `disk_full_error` recognizes the
  condition from the exception chain or by writing a probe, so the user reads "disk full"
  and the output path instead of a driver's guess.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import resource
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from geoseg.errors import GeosegError, OutputError, option

_TEMP_ENTRY = re.compile(r"^\.(?P<name>.+)\.(?P<kind>partial|old)-(?P<pid>\d+)$")
_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EFBIG, errno.EDQUOT})
_FULL_TEXTS = ("no space left", "file too large", "disk is full", "disk quota")
_PROBE_BYTES = 1 << 20


def pid_alive(pid: int) -> bool:
    """Whether a process with this id exists (it may belong to another user)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_entries(out: Path) -> list[Path]:
    """Remove ``.NAME.partial-PID`` / ``.NAME.old-PID`` entries of processes that are gone.

    A ``.NAME.old-PID`` folder is the previous result a killed run was replacing; it is put
    back under ``NAME`` when that name is free, else removed. Entries of live processes (another
    run writing into the same folder) are left alone. Returns the paths removed or restored.
    """
    handled = []
    for entry in sorted(out.iterdir()):
        match = _TEMP_ENTRY.match(entry.name)
        if match is None or pid_alive(int(match["pid"])):
            continue
        final = out / match["name"]
        if match["kind"] == "old" and not final.exists():
            entry.replace(final)
        elif entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)
        handled.append(entry)
    return handled


def _chain(exc: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in seen:
        seen.append(current)
        current = current.__cause__ or current.__context__
    return seen


def _reason_from_exception(exc: BaseException) -> str | None:
    for e in _chain(exc):
        if isinstance(e, OSError) and e.errno in _FULL_ERRNOS:
            return os.strerror(e.errno)
        text = str(e).lower()
        for needle in _FULL_TEXTS:
            if needle in text:
                return needle
    return None


def _probe_write(folder: Path, size_bytes: int = _PROBE_BYTES) -> OSError | None:
    """Write and remove ``size_bytes`` in ``folder``; the error if that fails, else None.

    The surest test of "is the disk full?" is to write: it sees free blocks, quotas and the
    process's file-size limit (RLIMIT_FSIZE) alike. Synced, so a delayed ENOSPC shows too.
    """
    probe = folder / f".geoseg-space-probe-{os.getpid()}"
    chunk = bytes(1 << 16)
    try:
        with probe.open("wb") as f:
            for _ in range(size_bytes // len(chunk)):
                f.write(chunk)
            f.flush()
            os.fsync(f.fileno())
    except OSError as exc:
        return exc
    finally:
        probe.unlink(missing_ok=True)
    return None


def _reason_from_filesystem(folder: Path) -> str | None:
    """A full file system, a quota, or the file-size limit, found by writing a probe."""
    error = _probe_write(folder)
    if error is None or error.errno not in _FULL_ERRNOS:
        return None
    if error.errno == errno.EFBIG:
        limit, _ = resource.getrlimit(resource.RLIMIT_FSIZE)
        return f"file too large: the file size limit is {limit} bytes (ulimit -f)"
    return os.strerror(error.errno or 0)


def disk_full_error(exc: BaseException, *, final: Path) -> OutputError | None:
    """An `OutputError` naming ``final`` if ``exc`` came from a full disk, else None.

    Recognized from errno or message anywhere in the exception chain, else by writing a
    probe next to ``final`` (GDAL and SQLite often report only "Write error at scanline 0"
    or "Failed to commit transaction").
    """
    if not isinstance(exc, Exception) or (
        isinstance(exc, GeosegError) and not isinstance(exc, OutputError)
    ):
        return None  # Ctrl-C, or a diagnosed input problem
    reason = _reason_from_exception(exc) or _reason_from_filesystem(final.parent)
    if reason is None:
        return None
    return OutputError(
        f"{final}: disk full or file too large while writing ({reason}); nothing was kept "
        "under that name: free space (or raise the limit) and run again, or pass another "
        f"{option('out')}"
    )


def temp_path_for(final: Path, suffix: str | None = None) -> Path:
    """Hidden temp name beside ``final``: ``.<stem>.partial-<pid><suffix>``.

    The suffix is kept last (default: the final one) because GDAL warns about a GeoPackage
    whose name does not end in ``.gpkg``.
    """
    suffix = final.suffix if suffix is None else suffix
    return final.with_name(f".{final.stem}.partial-{os.getpid()}{suffix}")


def temp_name(final: Path) -> Path:
    """The hidden temp entry beside ``final`` that this process builds it in (a folder, or a
    file whose readers do not care about its suffix): ``.<name>.partial-<pid>``."""
    return final.with_name(f".{final.name}.partial-{os.getpid()}")


@contextmanager
def written_atomically(final: Path) -> Iterator[Path]:
    """A temp path (`temp_name`) to write ``final`` to; renamed onto ``final`` when the block
    completes, removed whatever happens, so ``final`` is either the old file or the new one."""
    tmp = temp_name(final)
    try:
        yield tmp
        tmp.replace(final)
    finally:
        tmp.unlink(missing_ok=True)


def remove_temp_files(*paths: Path) -> None:
    """Remove temp files and the SQLite side files a crash may leave beside them."""
    for p in paths:
        for leftover in (p, p.with_name(p.name + "-journal"), p.with_name(p.name + "-wal")):
            with contextlib.suppress(FileNotFoundError):
                leftover.unlink()


@contextlib.contextmanager
def removed_on_error(*paths: Path) -> Iterator[None]:
    """Remove the given temp files if the block raises (renamed ones are simply gone)."""
    try:
        yield
    except BaseException:
        remove_temp_files(*paths)
        raise


def check_output_dir(path: Path) -> None:
    """Refuse an output whose folder is missing or not writable, before writing anything."""
    if not path.parent.is_dir():
        raise OutputError(
            f"{path}: the folder {path.parent} does not exist; create it or choose another "
            "output folder"
        )
    if not os.access(path.parent, os.W_OK):
        raise OutputError(
            f"{path}: the folder {path.parent} is not writable; fix its permissions or choose "
            "another output folder"
        )


def publish_folder(src: Path, dst: Path) -> None:
    """Move a finished temp folder onto its final name, replacing an older result."""
    old = dst.with_name(f".{dst.name}.old-{os.getpid()}")
    if dst.exists():
        dst.replace(old)
    src.replace(dst)
    shutil.rmtree(old, ignore_errors=True)


@contextmanager
def staged_folder(final: Path) -> Iterator[Path]:
    """A fresh temp folder beside ``final``, published onto it when the block completes.

    If the block raises, the temp folder is removed and an earlier ``final`` stays as it was;
    a full disk is reported as such (`disk_full_error`), naming ``final``.
    """
    tmp = temp_name(final)
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        tmp.mkdir()
        yield tmp
        publish_folder(tmp, final)
    except BaseException as exc:
        full = disk_full_error(exc, final=final)
        shutil.rmtree(tmp, ignore_errors=True)
        if full is not None:
            raise full from exc
        raise
