"""STAC API searches: items of some collections intersecting the AOI, in a datetime window.

pystac-client does the talking. Cloud cover is filtered by the server only where it conforms
to the Filter or Query extension, and always again on the client, so an API that ignores the
filter (rustac serve, many static-catalogue proxies) gives the same answer.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from shapely.geometry import mapping
from shapely.geometry.base import BaseGeometry

from geoseg.errors import RemoteSourceError, StacError, option
from geoseg.sources.hrefs import redact
from geoseg.sources.items import StacItem

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StacSearch:
    """What to search: an API, its collections, a datetime window, a cloud limit, how many."""

    api: str
    collections: tuple[str, ...]
    datetime: str | None = None
    max_cloud: float | None = None
    limit: int | None = None


@dataclass(frozen=True)
class SearchResult:
    """Items kept (newest ``limit`` of those within the cloud limit) and how many were seen."""

    items: list[StacItem]
    found: int
    within_cloud: int

    def summary(self, search: StacSearch) -> str:
        cloud = (
            f", {self.within_cloud} with ≤ {search.max_cloud:g} % cloud"
            if search.max_cloud is not None
            else ""
        )
        return (
            f"{redact(search.api)}: {self.found} item(s) of {', '.join(search.collections)} "
            f"intersect the AOI{cloud}; using {len(self.items)}"
        )


def cloud_cover(item: Mapping[str, Any]) -> float | None:
    value = (item.get("properties") or {}).get("eo:cloud_cover")
    return None if value is None else float(value)


def keep_items(
    items: Sequence[Mapping[str, Any]], max_cloud: float | None, limit: int | None
) -> tuple[list[Mapping[str, Any]], int]:
    """Items within ``max_cloud`` (those without eo:cloud_cover are kept), the newest ``limit``.

    Returns them oldest first, and how many passed the cloud limit.
    """
    clear = [
        i for i in items if max_cloud is None or (c := cloud_cover(i)) is None or c <= max_cloud
    ]
    ordered = sorted(clear, key=lambda i: str((i.get("properties") or {}).get("datetime") or ""))
    return (ordered[-limit:] if limit else ordered), len(clear)


def _server_filter(client: Any, max_cloud: float | None) -> dict[str, Any]:
    from pystac_client.conformance import ConformanceClasses

    if max_cloud is None:
        return {}
    if client.conforms_to(ConformanceClasses.FILTER):
        return {
            "filter": {"op": "<=", "args": [{"property": "eo:cloud_cover"}, max_cloud]},
            "filter_lang": "cql2-json",
        }
    if client.conforms_to(ConformanceClasses.QUERY):
        return {"query": {"eo:cloud_cover": {"lte": max_cloud}}}
    return {}


def search_items(search: StacSearch, aoi_wgs84: BaseGeometry) -> SearchResult:
    """Run ``search`` for items intersecting the AOI (lon/lat); refuse an empty result."""
    from pystac_client import Client
    from pystac_client.exceptions import APIError

    api = redact(search.api)
    try:
        client = Client.open(search.api)
        found = list(
            client.search(
                collections=list(search.collections),
                intersects=mapping(aoi_wgs84),
                datetime=search.datetime,
                **_server_filter(client, search.max_cloud),
            ).items_as_dicts()
        )
    except APIError as exc:
        if _unreachable(str(exc)):
            raise _unreachable_error(api) from None
        reason = str(exc).splitlines()[0][:200] if str(exc) else "error response"
        raise StacError(
            f"{api}: the STAC API refused the search ({reason}); check "
            f"{option('collection')} and {option('datetime')}"
        ) from None
    except (OSError, ValueError):
        raise _unreachable_error(api) from None
    kept, within = keep_items(found, search.max_cloud, search.limit)
    if not kept:
        raise StacError(
            f"{api}: no items of {', '.join(search.collections)} intersect the AOI"
            + (f" in {search.datetime}" if search.datetime else "")
            + (
                f" with ≤ {search.max_cloud:g} % cloud ({len(found)} without the cloud limit)"
                if search.max_cloud is not None and found
                else ""
            )
            + f"; widen {option('datetime')} or raise {option('max_cloud')}"
        )
    base = search.api
    items = [StacItem.from_dict(i, _self_href(i) or base) for i in kept]
    result = SearchResult(items, len(found), within)
    log.info(result.summary(search))
    return result


def _unreachable(message: str) -> bool:
    text = message.lower()
    return any(
        m in text
        for m in ("max retries exceeded", "failed to establish", "name or service", "timed out")
    )


def _unreachable_error(api: str) -> RemoteSourceError:
    return RemoteSourceError(
        f"{api}: the STAC API is unreachable or not a STAC API; check {option('stac_api')} "
        "and the network"
    )


def _self_href(item: Mapping[str, Any]) -> str | None:
    for link in item.get("links") or []:
        if isinstance(link, Mapping) and link.get("rel") == "self" and link.get("href"):
            return str(link["href"])
    return None
