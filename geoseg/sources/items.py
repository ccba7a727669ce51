"""STAC items from files and URLs: an Item, an ItemCollection, ndjson, or a folder of items.

Items stay plain JSON dicts (what a catalogue served, nothing migrated or resolved behind our
back) paired with the document they came from, against which relative asset hrefs resolve.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from geoseg.errors import RemoteSourceError, StacError
from geoseg.sources.hrefs import is_url, redact, resolve_href

FETCH_TIMEOUT_S = 60


@dataclass(frozen=True)
class StacItem:
    """One STAC item and where it was read from (a file path or URL)."""

    data: Mapping[str, Any] = field(hash=False, compare=False)
    base: str
    id: str
    collection: str

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], base: str) -> StacItem:
        if not isinstance(data.get("assets"), Mapping) or not data.get("id"):
            raise StacError(
                f"{redact(base)}: not a STAC Item (no id or assets); pass STAC Item JSON, an "
                "ItemCollection or ndjson of items"
            )
        return cls(data, base, str(data["id"]), str(data.get("collection") or ""))

    @property
    def properties(self) -> Mapping[str, Any]:
        return self.data.get("properties") or {}

    @property
    def assets(self) -> Mapping[str, Mapping[str, Any]]:
        return self.data["assets"]

    @property
    def datetime(self) -> str | None:
        props = self.properties
        return props.get("datetime") or props.get("start_datetime")

    def href(self, key: str) -> str:
        """Asset ``key``'s href, absolute (relative hrefs resolve against the item's file)."""
        return resolve_href(str(self.assets[key]["href"]), self.base)

    @property
    def key(self) -> tuple[str, str]:
        """What identifies the item in a run: (collection, id)."""
        return (self.collection, self.id)


def read_text(source: str) -> str:
    """A STAC document's text from a local path or an http(s) URL."""
    if not is_url(source):
        try:
            return Path(source).read_text(encoding="utf-8")
        except OSError as exc:
            raise StacError(f"{source}: cannot read the STAC file ({exc.strerror})") from None
    try:
        with urllib.request.urlopen(source, timeout=FETCH_TIMEOUT_S) as response:
            return response.read().decode("utf-8")
    except urllib.error.HTTPError as exc:
        raise RemoteSourceError(
            f"{redact(source)}: the STAC item cannot be fetched (HTTP {exc.code}); check the URL"
        ) from None
    except (urllib.error.URLError, TimeoutError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise RemoteSourceError(
            f"{redact(source)}: the server is unreachable ({reason}); check the URL and network"
        ) from None


def parse_items(text: str, source: str) -> list[StacItem]:
    """Items of one document: a Feature, a FeatureCollection, or one JSON item per line."""
    try:
        doc = json.loads(text)
    except json.JSONDecodeError:
        return _parse_ndjson(text, source)
    if isinstance(doc, Mapping) and doc.get("type") == "Feature":
        return [StacItem.from_dict(doc, source)]
    if isinstance(doc, Mapping) and doc.get("type") == "FeatureCollection":
        return [StacItem.from_dict(f, source) for f in doc.get("features") or []]
    kind = doc.get("type") if isinstance(doc, Mapping) else type(doc).__name__
    hint = (
        "search it with --stac-api URL --collection NAME"
        if kind in ("Collection", "Catalog")
        else "pass STAC Item JSON, an ItemCollection or ndjson of items"
    )
    raise StacError(f"{redact(source)}: a STAC {kind}, not items; {hint}")


def _parse_ndjson(text: str, source: str) -> list[StacItem]:
    items = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            items.append(StacItem.from_dict(json.loads(line), source))
        except json.JSONDecodeError as exc:
            raise StacError(
                f"{redact(source)}: line {number} is not JSON ({exc.msg}); pass STAC Item "
                "JSON, an ItemCollection or ndjson with one item per line"
            ) from None
    return items


def read_items(source: str) -> list[StacItem]:
    """The items of a STAC file or URL; refuse a document without any."""
    items = parse_items(read_text(source), source)
    if not items:
        raise StacError(f"{redact(source)}: the document holds no STAC items")
    return items


def is_stac_file(path: Path) -> bool:
    """A local .json file that is a STAC Item or ItemCollection (other JSON is not a scene)."""
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return False
    return (isinstance(doc, Mapping) and "stac_version" in doc) or (
        isinstance(doc, Mapping)
        and doc.get("type") == "FeatureCollection"
        and any("stac_version" in f for f in doc.get("features") or [] if isinstance(f, Mapping))
    )
