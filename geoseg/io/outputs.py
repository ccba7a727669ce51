"""Output folders after faults: temp entries left by killed runs, and full disks.

A run writes each result under a hidden temp name (``.NAME.partial-PID``) and renames it when
complete, so a crash never leaves a half result under a final name. Two faults still need
handling here:

- a run killed outright (SIGKILL, power loss) cannot remove its temp entries; the next run in
  the folder removes those whose process is gone (`remove_stale_entries`);
- a full disk (or a file-size limit) makes GDAL, SQLite or Python fail with messages that often
  do not say why (libtiff: "Write error at scanline 0"); `disk_full_error` recognizes the
  condition from the exception chain and from the file system itself, so the user reads
  "disk full" and the output path instead of a driver's guess.
"""

from __future__ import annotations

import errno
import os
import re
import resource
import shutil
from pathlib import Path

from geoseg.errors import GeosegError, OutputError

_TEMP_ENTRY = re.compile(r"^\.(?P<name>.+)\.(?P<kind>partial|old)-(?P<pid>\d+)$")
_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EFBIG, errno.EDQUOT})
_FULL_TEXTS = ("no space left", "file too large", "disk is full", "disk quota")
_LOW_SPACE_BYTES = 1 << 20  # below this much free space, a failed write is a full disk


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


def _largest_file(path: Path) -> int:
    """Size of ``path`` if it is a file, else of the largest file below it (0 if none)."""
    if path.is_file():
        return path.stat().st_size
    sizes = [p.stat().st_size for p in path.rglob("*") if p.is_file()] if path.exists() else []
    return max(sizes, default=0)


def _reason_from_filesystem(folder: Path, partial: Path) -> str | None:
    """A full file system, or a file that reached the process's file-size limit (RLIMIT_FSIZE)."""
    try:
        stats = os.statvfs(folder)
    except OSError:
        return None
    if stats.f_bavail * stats.f_frsize < _LOW_SPACE_BYTES:
        return "no space left on device"
    limit, _ = resource.getrlimit(resource.RLIMIT_FSIZE)
    if limit != resource.RLIM_INFINITY and _largest_file(partial) >= limit:
        return f"file too large: the file size limit is {limit} bytes (ulimit -f)"
    return None


def disk_full_error(exc: BaseException, *, final: Path, partial: Path) -> OutputError | None:
    """An `OutputError` naming ``final`` if ``exc`` came from a full disk, else None.

    Call it before removing ``partial`` (the temp file or folder being written): a file that
    stopped growing at the file-size limit is part of the evidence.
    """
    if not isinstance(exc, Exception) or (
        isinstance(exc, GeosegError) and not isinstance(exc, OutputError)
    ):
        return None  # Ctrl-C, or a diagnosed input problem
    reason = _reason_from_exception(exc) or _reason_from_filesystem(final.parent, partial)
    if reason is None:
        return None
    return OutputError(
        f"{final}: disk full or file too large while writing ({reason}); nothing was kept "
        "under that name: free space (or raise the limit) and run again, or pass another --out"
    )
