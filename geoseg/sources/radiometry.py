"""What a scene's stored values mean, and how they become the values a model was trained on.

Both sides are linear: physical value = stored × scale + offset. A scene declares its scale and
offset through STAC ``raster:bands``, GeoTIFF scale/offset metadata, or implicitly: Sentinel-2
L2A from processing baseline 04.00 on stores DN = 10000 × reflectance + 1000, Landsat
Collection 2 Level-2 surface reflectance is DN × 2.75e-05 - 0.2. A model package records its
own (e.g. reflectance × 10000: scale 1e-4, offset 0). `conversion` turns one into the other;
when either side says nothing the values are used as stored and the caller warns.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from geoseg.io.pixels import BandConversion

S2_SCALE = 1e-4
S2_OFFSET_FROM_04 = -0.1  # BOA_ADD_OFFSET -1000 in DN
LANDSAT_C2_SR = (2.75e-05, -0.2)


@dataclass(frozen=True)
class Radiometry:
    """physical = stored * ``scale`` + ``offset``; ``source`` says where that was declared."""

    scale: float
    offset: float
    source: str
    display: bool = False
    """The model's 8-bit display values: a scene declaring nothing is taken as such, unwarned."""

    @property
    def identity(self) -> bool:
        return self.scale == 1.0 and self.offset == 0.0


def raster_band(asset: Mapping[str, Any]) -> Mapping[str, Any]:
    """The asset's first raster band object (STAC 1.0 ``raster:bands``, 1.1 ``bands``)."""
    for key, prefix in (("raster:bands", ""), ("bands", "raster:")):
        bands = asset.get(key)
        if isinstance(bands, list) and bands and isinstance(bands[0], Mapping):
            band = bands[0]
            return {
                "scale": band.get(f"{prefix}scale"),
                "offset": band.get(f"{prefix}offset"),
                "nodata": band.get("nodata"),
            }
    return {}


def s2_offset(properties: Mapping[str, Any]) -> float | None:
    """The reflectance offset a Sentinel-2 L2A item's baseline implies; None if not Sentinel-2."""
    baseline = properties.get("s2:processing_baseline")
    if baseline is None:
        return None
    try:
        return S2_OFFSET_FROM_04 if float(str(baseline)) >= 4.0 else 0.0
    except ValueError:
        return None


def is_landsat_c2_sr(properties: Mapping[str, Any], asset_key: str) -> bool:
    """A Landsat Collection 2 Level-2 surface-reflectance band (SR_B*), by item and asset."""
    landsat = str(properties.get("platform", "")).lower().startswith("landsat") or any(
        k.startswith("landsat:") for k in properties
    )
    return landsat and asset_key.upper().startswith("SR_B")


def item_radiometry(
    properties: Mapping[str, Any], asset_key: str, asset: Mapping[str, Any]
) -> Radiometry | None:
    """What an item declares for one band asset (see the module docstring), or None."""
    band = raster_band(asset)
    scale, offset = band.get("scale"), band.get("offset")
    baseline_offset = s2_offset(properties)
    if scale is not None or offset is not None:
        if offset is None and baseline_offset:
            baseline = properties["s2:processing_baseline"]
            return Radiometry(
                float(scale or 1.0),
                baseline_offset,
                f"raster:bands scale + s2:processing_baseline {baseline}",
            )
        return Radiometry(
            float(1.0 if scale is None else scale), float(offset or 0.0), "raster:bands"
        )
    if baseline_offset is not None:
        baseline = properties["s2:processing_baseline"]
        return Radiometry(S2_SCALE, baseline_offset, f"s2:processing_baseline {baseline}")
    if is_landsat_c2_sr(properties, asset_key):
        return Radiometry(*LANDSAT_C2_SR, "Landsat Collection 2 Level-2")
    return None


def geotiff_radiometry(scale: float, offset: float) -> Radiometry | None:
    """A file's scale/offset metadata; None where it declares none (1 and 0, GDAL's default)."""
    if scale == 1.0 and offset == 0.0:
        return None
    return Radiometry(scale, offset, "GeoTIFF scale/offset")


def conversion(scene: Radiometry | None, model: Radiometry | None) -> BandConversion:
    """Stored scene values into the model's stored units; identity when either side is unknown.

    model value = (stored × s_scene + o_scene - o_model) / s_model
    """
    if scene is None or model is None:
        return BandConversion()
    gain = round(scene.scale / model.scale, 12)
    bias = round((scene.offset - model.offset) / model.scale, 9)
    return BandConversion(gain + 0.0, bias + 0.0)


def unknown_units_warning(
    label: str, scene: list[Radiometry | None], model: Radiometry | None
) -> str | None:
    """The one warning line when values are used as stored for want of a declaration."""
    if model is None and any(r is not None and not r.identity for r in scene):
        return (
            f"{label}: the model package does not record what its input values mean, so the "
            "scene's values are used as stored although the scene declares a scale/offset; "
            "re-save the package with its input radiometry"
        )
    if model is not None and model.display and all(r is None or r.identity for r in scene):
        return None  # plain 0-255 RGB: nothing to declare
    if model is not None and all(r is None for r in scene):
        return (
            f"{label}: the scene declares no scale/offset, so its values are used as stored "
            f"(assumed to be the model's units: value × {model.scale:g} + {model.offset:g}); "
            "add scale/offset metadata (gdal_edit.py -scale/-offset) if they differ"
        )
    if model is not None and any(r is None for r in scene):
        missing = sum(r is None for r in scene)
        return (
            f"{label}: {missing} band(s) declare no scale/offset and are used as stored while the "
            "others are converted; check the scene's metadata"
        )
    return None
