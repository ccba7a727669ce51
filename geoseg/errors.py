"""One exception family for everything a user can get wrong.

Every message names the file (or option), what is wrong with it, and what to do about it.
The CLI turns a `GeosegError` into one red line and a non-zero exit code; tracebacks only
appear with ``--debug``. Subclasses also inherit the builtin they refine, as rasterio does,
so ``except OSError`` still catches an unreadable file.

Options are named the way the user typed them: `option` gives ``--tile-size`` by default (the
CLI) and ``tile_size`` inside `setting_names` (the Prefect flows, whose parameters are
settings fields).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

_SETTING_NAMES: ContextVar[bool] = ContextVar("geoseg_setting_names", default=False)


def option(name: str) -> str:
    """How a message names the setting ``name`` (e.g. ``tile_size``): as the caller types it."""
    return name if _SETTING_NAMES.get() else "--" + name.replace("_", "-")


@contextmanager
def setting_names() -> Iterator[None]:
    """Within this block, messages name settings (``tile_size``), not flags (``--tile-size``)."""
    token = _SETTING_NAMES.set(True)
    try:
        yield
    finally:
        _SETTING_NAMES.reset(token)


class GeosegError(Exception):
    """Root of all user-facing geoseg errors."""

    exit_code: int = 2


class AoiError(GeosegError, ValueError):
    """The area of interest cannot be used (missing, no CRS, empty or invalid geometry)."""


class AoiOutsideScenesError(AoiError):
    """The AOI does not intersect any of the given scenes."""


class SceneError(GeosegError, OSError):
    """A scene cannot be read or used."""


class RemoteSourceError(SceneError):
    """A remote raster, STAC item or asset cannot be fetched (404, 403, unreachable)."""


class StacError(SceneError):
    """A STAC item, collection or search cannot be used (bad JSON, no items, missing band)."""


class ModelPackageError(GeosegError, ValueError):
    """A model package is missing, corrupt, or does not fit a scene."""


class IncompatibleSceneError(ModelPackageError):
    """A scene's bands, dtype or ground sample distance do not fit the model package."""


class OutputError(GeosegError, OSError):
    """An output location cannot be written."""


class ClusterError(GeosegError, OSError):
    """A Dask scheduler or worker stopped answering while it held block results."""


class ConfigError(GeosegError, ValueError):
    """An option or configuration value is invalid."""


class TrainingDataError(GeosegError, ValueError):
    """Training images and labels cannot be used together."""


class RunCancelledError(GeosegError):
    """The run was cancelled (Ctrl-C); no partial outputs were left under final names."""

    exit_code = 130


class DeploymentError(GeosegError):
    """Prefect deployments cannot be created (no Prefect, no server, bad prefect.yaml)."""
