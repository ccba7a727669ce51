"""Hidden temp names beside final outputs, and their clean-up.

Outputs are written under ``.<stem>.partial-<pid><suffix>`` and renamed onto their final name
only when complete, so a crash never leaves a half-written file where a user would open it.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

from geoseg.errors import OutputError


def temp_path_for(final: Path, suffix: str | None = None) -> Path:
    """Hidden temp name beside ``final``: ``.<stem>.partial-<pid><suffix>``.

    The suffix is kept last (default: the final one) because GDAL warns about a GeoPackage
    whose name does not end in ``.gpkg``.
    """
    suffix = final.suffix if suffix is None else suffix
    return final.with_name(f".{final.stem}.partial-{os.getpid()}{suffix}")


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
