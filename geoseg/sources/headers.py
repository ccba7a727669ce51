"""Raster headers read through GDAL (local, /vsicurl/, /vsis3/), with one-line failures.

Opening a COG reads only its header (one or two range requests). When GDAL cannot open a
remote file its message rarely says why, so an http(s) URL is probed once more with a one-byte
range request to tell 404, 403 and an unreachable server apart; S3 errors carry their code.
"""

from __future__ import annotations

import urllib.error
import urllib.request
from dataclasses import dataclass

import rasterio
from rasterio._err import CPLE_BaseError
from rasterio.errors import RasterioIOError

from geoseg.errors import RemoteSourceError, SceneError
from geoseg.geo.scene import SceneGrid
from geoseg.sources.hrefs import gdal_path, is_remote, redact

PROBE_TIMEOUT_S = 20


@dataclass(frozen=True)
class RasterHeader:
    """What a band file says about itself: grid, bands, types, nodata, blocks, scale/offset."""

    href: str
    path: str
    grid: SceneGrid
    count: int
    dtypes: tuple[str, ...]
    nodata: float | None
    block: tuple[int, int]
    scales: tuple[float, ...]
    offsets: tuple[float, ...]


def read_header(href: str, what: str) -> RasterHeader:
    """Open ``href``'s header; ``what`` names it in errors (e.g. "item X asset blue")."""
    path = gdal_path(href)
    try:
        with rasterio.open(path) as ds:
            return RasterHeader(
                href=href,
                path=path,
                grid=SceneGrid(ds.crs, ds.transform, ds.height, ds.width),
                count=ds.count,
                dtypes=tuple(ds.dtypes),
                nodata=ds.nodata,
                block=tuple(ds.block_shapes[0]),
                scales=tuple(ds.scales),
                offsets=tuple(ds.offsets),
            )
    except (RasterioIOError, CPLE_BaseError) as exc:
        raise open_failure(href, what, str(exc)) from None


def open_failure(href: str, what: str, message: str) -> SceneError:
    """The one-line error for a raster GDAL could not open, with the reason told apart."""
    shown = redact(href)
    what = what if what == shown else f"{what} ({shown})"
    if not is_remote(href):
        reason = message.rsplit(":", maxsplit=1)[-1].strip() or "not a raster GDAL can read"
        return SceneError(
            f"{what}: cannot read the raster ({reason}); check the path and that "
            "the file is a complete GeoTIFF/COG"
        )
    status = probe_status(href) if href.lower().startswith(("http://", "https://")) else None
    text = message.lower()
    missing = ("nosuchkey", "nosuchbucket", "does not exist", "404")
    if status == 404 or any(m in text for m in missing):
        return RemoteSourceError(
            f"{what}: not found (HTTP 404); check the href, or whether the "
            "catalogue moved or removed its files"
        )
    if status in (401, 403) or "accessdenied" in text or "403" in text:
        return RemoteSourceError(
            f"{what}: access denied (HTTP {status or 403}); set credentials "
            "(AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or AWS_PROFILE, AWS_NO_SIGN_REQUEST=YES "
            "for a public bucket) or use a signed URL"
        )
    if status == -1 or "connect" in text or "resolve host" in text or "timed out" in text:
        return RemoteSourceError(
            f"{what}: the server is unreachable (after retries); check the "
            "network, proxy (HTTPS_PROXY) or the endpoint (AWS_S3_ENDPOINT)"
        )
    reason = message.splitlines()[0].replace(gdal_path(href), "").strip(" :'")
    return RemoteSourceError(
        f"{what}: GDAL cannot read it ({redact(reason)}); check that it is a "
        "GeoTIFF/COG the server returns with byte ranges"
    )


def probe_status(url: str) -> int | None:
    """HTTP status of a one-byte range request; -1 when the server cannot be reached."""
    request = urllib.request.Request(url, headers={"Range": "bytes=0-0"})
    try:
        with urllib.request.urlopen(request, timeout=PROBE_TIMEOUT_S) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
    except (urllib.error.URLError, TimeoutError, OSError):
        return -1
