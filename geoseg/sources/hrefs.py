"""Where pixels live: local paths, http(s) and s3 URLs, and GDAL's /vsicurl/ and /vsis3/ names.

URLs are never turned into `Path` objects (that folds ``//`` and mangles them); every href is
kept as text and only `gdal_path` converts it into what GDAL opens. `redact` removes what must
never reach a log, an error or run.json: passwords in URLs and signed-URL query strings.
"""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import urljoin, urlsplit, urlunsplit

REMOTE_SCHEMES = ("http://", "https://", "s3://")
VSI_PREFIXES = ("/vsicurl/", "/vsis3/", "/vsigs/", "/vsiaz/", "/vsicurl_streaming/")
RASTER_SUFFIXES = (".tif", ".tiff", ".vrt", ".jp2", ".img")
STAC_SUFFIXES = (".json", ".geojson", ".ndjson", ".jsonl")


def is_url(href: str) -> bool:
    """An http(s) or s3 URL (what a STAC catalogue puts in ``href``)."""
    return href.lower().startswith(REMOTE_SCHEMES)


def is_remote(href: str) -> bool:
    """A URL or a GDAL virtual-file name of a remote object."""
    return is_url(href) or href.startswith(VSI_PREFIXES)


def gdal_path(href: str) -> str:
    """The name GDAL opens for ``href``: /vsicurl/ for http(s), /vsis3/ for s3, else as is."""
    lower = href.lower()
    if lower.startswith(("http://", "https://")):
        return f"/vsicurl/{href}"
    if lower.startswith("s3://"):
        return f"/vsis3/{href[5:]}"
    return href


def url_path(href: str) -> str:
    """The path part of a URL or /vsi name (no query string): what its suffix is read from."""
    text = href
    for prefix in VSI_PREFIXES:
        if text.startswith(prefix):
            text = text[len(prefix) :]
    return urlsplit(text).path if is_url(text) else text.split("?", 1)[0]


def href_suffix(href: str) -> str:
    """The lower-case suffix of an href's path ('.tif', '.json', '' if none)."""
    name = url_path(href).rsplit("/", 1)[-1]
    return f".{name.rsplit('.', 1)[-1].lower()}" if "." in name else ""


def href_stem(href: str) -> str:
    """The file name of an href without suffix: a scene's default output name."""
    name = url_path(href).rstrip("/").rsplit("/", 1)[-1]
    return name.rsplit(".", 1)[0] if "." in name else name


def resolve_href(href: str, base: str | Path | None) -> str:
    """An asset href made absolute against the document it came from (URL or local file)."""
    if is_remote(href) or base is None:
        return href
    base_text = str(base)
    if is_url(base_text):
        return urljoin(base_text, href)
    if Path(href).is_absolute():
        return href
    return str((Path(base_text).parent / href).resolve())


def redact(href: str) -> str:
    """``href`` without user:password and query string (signed URLs carry their keys there)."""
    prefix = next((p for p in VSI_PREFIXES if href.startswith(p)), "")
    text = href[len(prefix) :]
    if not is_url(text):
        return href
    parts = urlsplit(text)
    netloc = parts.hostname or ""
    if parts.port:
        netloc = f"{netloc}:{parts.port}"
    query = "<redacted>" if parts.query else ""
    return prefix + urlunsplit((parts.scheme, netloc, parts.path, query, ""))


def safe_name(text: str) -> str:
    """An item id or file stem as a folder name: anything but letters, digits, ._- becomes _."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("._") or "scene"
