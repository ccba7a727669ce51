"""GDAL settings for reading remote rasters well, applied for one run and never over the user's.

Without them GDAL lists the remote "folder" of every file it opens (hundreds of requests on a
bucket), does not retry a transient 5xx, and grows its block cache to 5 % of RAM. Each default
is set only where the environment does not already say otherwise, and restored afterwards.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

from geoseg.sources.hrefs import RASTER_SUFFIXES, href_suffix, is_remote

REMOTE_DEFAULTS: dict[str, str] = {
    "GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR",  # no directory listing on open
    "GDAL_HTTP_MAX_RETRY": "4",  # 429 / 5xx / timeouts are retried ...
    "GDAL_HTTP_RETRY_DELAY": "1",  # ... after 1 s, doubling
    "GDAL_HTTP_TIMEOUT": "60",
    "GDAL_HTTP_MERGE_CONSECUTIVE_RANGES": "YES",
    "GDAL_HTTP_MULTIPLEX": "YES",
    "VSI_CACHE": "TRUE",  # re-reads of the same bytes (overlapping tiles) hit memory
    "VSI_CACHE_SIZE": str(64 * 1024 * 1024),  # per open file
    "GDAL_CACHEMAX": "512",  # MB of decoded blocks, whatever the machine's RAM
}


def remote_defaults(hrefs: Iterable[str], *, searched: bool = False) -> dict[str, str]:
    """The settings for a run reading ``hrefs``; empty when every href is a local file and
    nothing is ``searched`` (a STAC search's assets are remote, their hrefs not yet known).

    ``CPL_VSIL_CURL_ALLOWED_EXTENSIONS`` (GDAL fetches no sidecar files such as .aux.xml or
    .ovr) is set to the suffixes the hrefs use, and left unset when one has no raster suffix
    (a signed or extension-less URL would otherwise look missing).
    """
    remote = [h for h in hrefs if is_remote(h)]
    if not remote and not searched:
        return {}
    settings = dict(REMOTE_DEFAULTS)
    suffixes = {href_suffix(h) for h in remote}
    if remote and suffixes <= set(RASTER_SUFFIXES):
        settings["CPL_VSIL_CURL_ALLOWED_EXTENSIONS"] = ",".join(sorted(suffixes))
    return settings


@contextmanager
def gdal_remote_env(hrefs: Iterable[str], *, searched: bool = False) -> Iterator[dict[str, str]]:
    """Set `remote_defaults` in the process environment where unset; restore on exit.

    The environment (not a thread-local `rasterio.Env`) so that every reader thread and an
    in-process vectorizer see the same settings. Yields the settings actually applied.
    """
    defaults = remote_defaults(hrefs, searched=searched)
    applied = {k: v for k, v in defaults.items() if k not in os.environ}
    os.environ.update(applied)
    try:
        yield applied
    finally:
        for key in applied:
            os.environ.pop(key, None)
