"""Cloud and quality masks: which asset flags which pixels, from ``--cloud-mask``.

``auto`` uses the Sentinel-2 scene classification (SCL) or the Landsat Collection 2 QA_PIXEL
band when the item has one; ``ASSET:V1,V2`` any mask asset and the values to drop; ``none``
no mask. Masked pixels become nodata in every output, exactly like input nodata.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from geoseg.errors import ConfigError, StacError, option
from geoseg.sources.bands import asset_band_names

SCL_MASKED = (0, 1, 3, 8, 9, 10)
"""SCL classes dropped: no data, saturated/defective, cloud shadow, cloud medium/high, cirrus."""
QA_PIXEL_BITS = (0, 1, 2, 3, 4)
"""QA_PIXEL bits dropped: fill, dilated cloud, cirrus, cloud, cloud shadow."""


@dataclass(frozen=True)
class CloudMaskSpec:
    """What the user asked for: ``auto``, ``none`` or an asset and its masked values."""

    mode: str = "auto"
    asset: str | None = None
    values: tuple[int, ...] = ()

    def __str__(self) -> str:
        if self.mode == "asset":
            return f"{self.asset}:{','.join(map(str, self.values))}"
        return self.mode


def parse_cloud_mask(text: str) -> CloudMaskSpec:
    """``auto`` | ``none`` | ``ASSET:V1,V2,...``; refuse anything else with one line."""
    value = text.strip()
    if value.lower() in ("auto", "none"):
        return CloudMaskSpec(value.lower())
    asset, sep, values = value.partition(":")
    try:
        parsed = tuple(int(v) for v in values.split(",") if v.strip())
    except ValueError:
        parsed = ()
    if not sep or not asset or not parsed:
        raise ConfigError(
            f"{option('cloud_mask')} {text!r}: expected auto, none or ASSET:V1,V2,... "
            "(e.g. scl:3,8,9,10)"
        )
    return CloudMaskSpec("asset", asset, parsed)


@dataclass(frozen=True)
class MaskChoice:
    """The asset an item's mask comes from and the values or bits it drops."""

    asset: str
    values: tuple[int, ...] = ()
    bits: tuple[int, ...] = ()

    def describe(self) -> dict[str, Any]:
        return {"asset": self.asset, "values": list(self.values), "bits": list(self.bits)}


def _find_key(assets: Mapping[str, Mapping[str, Any]], name: str) -> str | None:
    for key, asset in assets.items():
        if key.lower() == name or name in asset_band_names(asset)[0]:
            return key
    return None


def choose_mask(
    spec: CloudMaskSpec, item_id: str, assets: Mapping[str, Mapping[str, Any]]
) -> MaskChoice | None:
    """The mask for one item; None for ``none`` or ``auto`` without a known mask asset."""
    if spec.mode == "none":
        return None
    if spec.mode == "asset":
        key = spec.asset if spec.asset in assets else _find_key(assets, str(spec.asset).lower())
        if key is None:
            raise StacError(
                f"item {item_id}: no mask asset {spec.asset!r} for {option('cloud_mask')} (the "
                f"item has assets {', '.join(sorted(assets))}); name one of them or use auto"
            )
        return MaskChoice(key, values=spec.values)
    scl = _find_key(assets, "scl")
    if scl is not None:
        return MaskChoice(scl, values=SCL_MASKED)
    qa = _find_key(assets, "qa_pixel")
    if qa is not None:
        return MaskChoice(qa, bits=QA_PIXEL_BITS)
    return None
