"""Which asset of a STAC item holds each band a model needs, by name.

A model package names its bands (blue, green, red, nir, ...). Catalogues spell them
differently: Earth Search uses common names as asset keys (``blue``), Planetary Computer the
Sentinel-2 band ids (``B02``) with ``eo:bands`` common names, Landsat Collection 2 ``SR_B2`` or
``blue`` with ``nir08`` for the near infrared. A band matches, in this order: an asset key, an
``eo:bands`` name, a ``common_name``, then the spellings in `ALIASES`; case does not matter.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from geoseg.errors import StacError

ALIASES: dict[str, tuple[str, ...]] = {
    "coastal": ("b01", "sr_b1", "coastal"),
    "blue": ("b02", "sr_b2", "blue"),
    "green": ("b03", "sr_b3", "green"),
    "red": ("b04", "sr_b4", "red"),
    "rededge1": ("b05", "rededge1"),
    "rededge2": ("b06", "rededge2"),
    "rededge3": ("b07", "rededge3"),
    "nir": ("b08", "nir", "nir08", "sr_b5"),
    "nir08": ("b8a", "nir08", "sr_b5"),
    "nir09": ("b09", "nir09"),
    "swir16": ("b11", "swir16", "sr_b6"),
    "swir22": ("b12", "swir22", "sr_b7"),
}
"""Model band name -> the asset keys / band names that hold it, in order of preference."""

DATA_MEDIA = ("image/tiff", "image/jp2", "application/x-hdf", "image/vnd.stac.geotiff")


def asset_band_names(asset: Mapping[str, Any]) -> tuple[set[str], set[str]]:
    """The asset's band names and common names (STAC 1.0 ``eo:bands`` or 1.1 ``bands``)."""
    names: set[str] = set()
    common: set[str] = set()
    for band in list(asset.get("eo:bands") or []) + list(asset.get("bands") or []):
        if not isinstance(band, Mapping):
            continue
        if band.get("name"):
            names.add(str(band["name"]).lower())
        for key in ("common_name", "eo:common_name"):
            if band.get(key):
                common.add(str(band[key]).lower())
    return names, common


def is_raster_asset(asset: Mapping[str, Any]) -> bool:
    """A data raster (not a thumbnail, metadata XML or preview): by media type or suffix."""
    media = str(asset.get("type") or "").lower()
    roles = set(asset.get("roles") or [])
    if roles & {"thumbnail", "overview", "visual", "metadata"} and "data" not in roles:
        return False
    if media:
        return media.startswith(DATA_MEDIA)
    href = str(asset.get("href", "")).lower().split("?", 1)[0]
    return href.endswith((".tif", ".tiff", ".jp2", ".vrt"))


def _candidates(
    assets: Mapping[str, Mapping[str, Any]],
) -> Iterator[tuple[str, set[str], set[str]]]:
    for key, asset in assets.items():
        if is_raster_asset(asset):
            names, common = asset_band_names(asset)
            yield key, names, common


def find_asset(assets: Mapping[str, Mapping[str, Any]], band: str) -> str | None:
    """The key of the asset holding ``band``, or None (see the module docstring for the order)."""
    wanted = band.lower()
    candidates = list(_candidates(assets))
    for test in (
        lambda key, names, common: key.lower() == wanted,
        lambda key, names, common: wanted in names,
        lambda key, names, common: wanted in common,
    ):
        for key, names, common in candidates:
            if test(key, names, common):
                return key
    for alias in ALIASES.get(wanted, ()):
        for key, names, common in candidates:
            if alias == key.lower() or alias in names or alias in common:
                return key
    return None


def match_bands(
    item_id: str, assets: Mapping[str, Mapping[str, Any]], bands: Sequence[str]
) -> list[str]:
    """Asset keys for the model's ``bands``, in order; refuse an item lacking one of them."""
    keys = [find_asset(assets, b) for b in bands]
    missing = [b for b, k in zip(bands, keys, strict=True) if k is None]
    if missing:
        raise StacError(
            f"item {item_id}: no asset holds the model band(s) {', '.join(missing)} (the model "
            f"needs {', '.join(bands)}; the item has assets {', '.join(sorted(assets))}); use "
            "items of a collection with those bands or a model trained on the item's bands"
        )
    return [k for k in keys if k is not None]
