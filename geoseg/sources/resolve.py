"""Each scene input resolved into what the run reads: a raster file and a `ReadPlan`.

A local GeoTIFF that already fits the model is read as it is. A STAC item (one COG per band),
a remote raster, or a scene at another pixel size becomes a small VRT (`geoseg.sources.vrt`)
holding the model's bands in the model's order on one grid at the model's GSD, aligned to the
scene's origin, plus the mask band last. The `ReadPlan` converts stored values into the
model's units and drops masked pixels; ``record`` is what run.json says about the input.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from geoseg.errors import IncompatibleSceneError, StacError, option
from geoseg.geo.scene import SceneGrid
from geoseg.io.pixels import BandConversion, MaskRule, ReadPlan
from geoseg.io.raster import open_scene
from geoseg.models.package import ModelPackage, SceneFacts, check_scene
from geoseg.sources.bands import match_bands
from geoseg.sources.headers import RasterHeader, read_header
from geoseg.sources.hrefs import href_stem, is_remote, redact, safe_name
from geoseg.sources.inputs import SceneInput
from geoseg.sources.items import StacItem
from geoseg.sources.masks import MaskChoice, choose_mask
from geoseg.sources.options import SourceOptions
from geoseg.sources.radiometry import (
    Radiometry,
    conversion,
    geotiff_radiometry,
    item_radiometry,
    unknown_units_warning,
)
from geoseg.sources.vrt import VrtBand, vrt_xml

SAME_GSD = 0.01
"""Pixel sizes within 1 % of the model's are used as they are; others are resampled."""


@dataclass(frozen=True)
class ResolvedScene:
    """One scene ready to plan: the raster GDAL opens, how to read it, what to record."""

    name: str
    label: str
    path: Path
    plan: ReadPlan
    hrefs: tuple[str, ...] = ()
    datetime: str | None = None
    warnings: tuple[str, ...] = ()
    record: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)


def model_radiometry(package: ModelPackage) -> Radiometry | None:
    units = package.metadata.radiometry
    if units is None:
        return None
    return Radiometry(units.scale, units.offset, "model package", display=units.display)


def target_grid(native: SceneGrid, package: ModelPackage, resample: bool, label: str) -> SceneGrid:
    """The grid a scene is predicted on: its own, or resampled to the model GSD at its origin.

    With ``resample`` off a pixel size beyond the package's tolerance is refused, as before.
    """
    meta = package.metadata
    ratio = native.gsd_m / meta.gsd_m
    if abs(ratio - 1.0) <= SAME_GSD:
        return native
    if not resample:
        if abs(ratio - 1.0) > meta.gsd_tolerance:
            raise IncompatibleSceneError(
                f"{label}: ground sample distance {native.gsd_m:.2f} m is too far from the "
                f"model's {meta.gsd_m:.2f} m (tolerance {meta.gsd_tolerance:.0%}) and "
                f"{option('no_resample')} is set; drop it to resample to {meta.gsd_m:g} m"
            )
        return native
    return native.resampled(meta.gsd_m / native.gsd_m)


def resampling_for(band: SceneGrid, target: SceneGrid) -> str:
    """nearest for an aligned copy, bilinear onto smaller pixels, average onto larger ones."""
    ratio = band.transform.a / target.transform.a
    col = (band.transform.c - target.transform.c) / target.transform.a
    row = (band.transform.f - target.transform.f) / target.transform.e
    aligned = abs(ratio - 1.0) < 1e-9 and col == round(col) and row == round(row)
    if aligned:
        return "nearest"
    return "bilinear" if ratio >= 1.0 - 1e-9 else "average"


def _conversions(
    radiometry: Sequence[Radiometry | None], model: Radiometry | None
) -> tuple[BandConversion, ...]:
    convs = tuple(conversion(r, model) for r in radiometry)
    return convs if any(not c.identity for c in convs) else ()


def _radiometry_record(
    bands: Sequence[str], radiometry: Sequence[Radiometry | None], plan: ReadPlan
) -> list[dict[str, Any]]:
    convs = plan.conversions or tuple(BandConversion() for _ in bands)
    return [
        {
            "band": b,
            "declared": None
            if r is None
            else {"scale": r.scale, "offset": r.offset, "source": r.source},
            "gain": c.gain,
            "bias": c.bias,
        }
        for b, r, c in zip(bands, radiometry, convs, strict=True)
    ]


def _grid_record(native: SceneGrid, target: SceneGrid, methods: Sequence[str]) -> dict[str, Any]:
    return {
        "native_gsd_m": round(native.gsd_m, 6),
        "gsd_m": round(target.gsd_m, 6),
        "shape": [target.height, target.width],
        "resampling": sorted(set(methods)),
    }


def _write_vrt(folder: Path, name: str, target: SceneGrid, bands: Sequence[VrtBand]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.vrt"
    path.write_text(vrt_xml(target, bands), encoding="utf-8")
    return path


def resolve_item(
    item: StacItem,
    package: ModelPackage,
    options: SourceOptions,
    vrt_dir: Path,
    *,
    name: str | None = None,
) -> ResolvedScene:
    """A STAC item's band assets (and mask) as one VRT on the model's grid, with its plan."""
    meta = package.metadata
    band_names = [b.name for b in meta.bands]
    keys = match_bands(item.id, item.assets, band_names)
    mask = choose_mask(options.cloud_mask, item.id, item.assets)
    wanted = list(dict.fromkeys(keys + ([mask.asset] if mask else [])))
    headers = {k: read_header(item.href(k), f"item {item.id} asset {k}") for k in wanted}
    _check_one_crs(item, headers)
    data = [headers[k] for k in keys]
    native = min((h.grid for h in data), key=lambda g: g.gsd_m)
    label = f"item {item.id}"
    target = target_grid(native, package, options.resample, label)
    if not options.resample:
        _check_same_grid(item, keys, headers, target)
    radiometry = [
        item_radiometry(item.properties, k, item.assets[k])
        or geotiff_radiometry(headers[k].scales[0], headers[k].offsets[0])
        for k in keys
    ]
    vrt_bands = [
        _vrt_band(headers[k], target, name, _asset_nodata(item, k, headers[k]))
        for k, name in zip(keys, band_names, strict=True)
    ]
    if mask is not None:
        h = headers[mask.asset]
        vrt_bands.append(
            VrtBand(h.path, 1, h.grid, h.dtypes[0], h.nodata, h.block, "nearest", mask.asset)
        )
    name = name or safe_name(item.id)
    plan = ReadPlan(
        tuple(range(1, len(keys) + 1)),
        _conversions(radiometry, model_radiometry(package)),
        _mask_rule(mask, len(keys) + 1),
    )
    _check_dtypes(
        label, package, [headers[k].dtypes[0] for k in keys], converted=bool(plan.conversions)
    )
    warning = unknown_units_warning(label, radiometry, model_radiometry(package))
    record = {
        "kind": "stac-item",
        "item": item.id,
        "collection": item.collection,
        "datetime": item.datetime,
        "source": redact(item.base),
        "assets": {
            b: {"key": k, "href": redact(item.href(k))}
            for b, k in zip(band_names, keys, strict=True)
        },
        "radiometry": _radiometry_record(band_names, radiometry, plan),
        "cloud_mask": None
        if mask is None
        else mask.describe() | {"href": redact(item.href(mask.asset))},
        "grid": _grid_record(native, target, [b.resampling for b in vrt_bands]),
    }
    return ResolvedScene(
        name=name,
        label=label,
        path=_write_vrt(vrt_dir, name, target, vrt_bands),
        plan=plan,
        hrefs=tuple(item.href(k) for k in wanted),
        datetime=item.datetime,
        warnings=(warning,) if warning else (),
        record=record,
    )


def _vrt_band(
    header: RasterHeader, target: SceneGrid, name: str, nodata: float | None, band: int = 1
) -> VrtBand:
    method = resampling_for(header.grid, target)
    return VrtBand(
        header.path, band, header.grid, header.dtypes[band - 1], nodata, header.block, method, name
    )


def _asset_nodata(item: StacItem, key: str, header: RasterHeader) -> float | None:
    from geoseg.sources.radiometry import raster_band

    declared = raster_band(item.assets[key]).get("nodata")
    return header.nodata if declared is None else float(declared)


def _mask_rule(mask: MaskChoice | None, band: int) -> MaskRule | None:
    return None if mask is None else MaskRule(band, mask.values, mask.bits)


def _check_one_crs(item: StacItem, headers: dict[str, RasterHeader]) -> None:
    crs = {k: h.grid.crs for k, h in headers.items()}
    if len({c.to_string() if c else "" for c in crs.values()}) > 1:
        listed = ", ".join(f"{k}: {c.to_string() if c else 'none'}" for k, c in crs.items())
        raise StacError(
            f"item {item.id}: its assets are in different CRSs ({listed}); geoseg needs one CRS "
            "per item: warp the odd assets or use an item whose bands share a grid"
        )


def _check_same_grid(
    item: StacItem, keys: Sequence[str], headers: dict[str, RasterHeader], target: SceneGrid
) -> None:
    odd = [k for k in keys if headers[k].grid.transform.a != target.transform.a]
    if odd:
        sizes = ", ".join(f"{k}: {headers[k].grid.gsd_m:g} m" for k in odd)
        raise IncompatibleSceneError(
            f"item {item.id}: bands at other pixel sizes ({sizes}; the grid is "
            f"{target.gsd_m:g} m) and {option('no_resample')} is set; drop it to resample them"
        )


def _check_dtypes(
    label: str, package: ModelPackage, dtypes: Sequence[str], *, converted: bool
) -> None:
    meta = package.metadata
    if not converted and set(dtypes) != {meta.dtype}:
        raise IncompatibleSceneError(
            f"{label}: band dtype {', '.join(sorted(set(dtypes)))} but the model "
            f"{package.path.name} was trained on {meta.dtype}, and the item declares no "
            "scale/offset to convert them; use items of the collection the model was trained on"
        )


def resolve_raster(
    href: str,
    package: ModelPackage,
    options: SourceOptions,
    vrt_dir: Path,
    *,
    name: str | None = None,
) -> ResolvedScene:
    """A raster file or URL: read as is when local and at the model's GSD, else via a VRT."""
    if options.cloud_mask.mode == "asset":
        raise StacError(
            f"{redact(href)}: {option('cloud_mask')} {options.cloud_mask} names a mask asset, "
            "but this scene is a raster, not a STAC item; use auto or none"
        )
    meta = package.metadata
    label = redact(href) if is_remote(href) else href
    if is_remote(href):
        header = read_header(href, label)
    else:
        open_scene(href)  # the checks and messages a local file always had
        header = read_header(href, label)
    indexes = meta.band_indexes
    target = target_grid(header.grid, package, options.resample, label)
    radiometry = [
        geotiff_radiometry(header.scales[i - 1], header.offsets[i - 1])
        if i <= header.count
        else None
        for i in indexes
    ]
    convs = _conversions(radiometry, model_radiometry(package))
    # the band count and dtype checks on the file itself, before any VRT hides them
    check_scene(
        package,
        SceneFacts(label, header.count, header.dtypes, meta.gsd_m, converted=bool(convs)),
    )
    band_names = [b.name for b in meta.bands]
    wrap = is_remote(href) or target != header.grid
    name = name or safe_name(href_stem(href))
    if wrap:
        vrt_bands = [
            _vrt_band(header, target, b, header.nodata, band=i)
            for i, b in zip(indexes, band_names, strict=True)
        ]
        path = _write_vrt(vrt_dir, name, target, vrt_bands)
        plan = ReadPlan(tuple(range(1, len(indexes) + 1)), convs)
        methods = [b.resampling for b in vrt_bands]
    else:
        path, plan, methods = Path(href), ReadPlan(tuple(indexes), convs), ["none"]
    warning = unknown_units_warning(label, radiometry, model_radiometry(package))
    record = {
        "kind": "raster",
        "href": label,
        "radiometry": _radiometry_record(band_names, radiometry, plan),
        "cloud_mask": None,
        "grid": _grid_record(header.grid, target, methods),
    }
    return ResolvedScene(
        name=name,
        label=label,
        path=path,
        plan=plan,
        hrefs=(href,),
        datetime=None,
        warnings=(warning,) if warning else (),
        record=record,
    )


def resolve_inputs(
    inputs: Sequence[SceneInput], package: ModelPackage, options: SourceOptions, vrt_dir: Path
) -> list[ResolvedScene]:
    """Every input resolved; output names made unique (``name``, ``name_2``, ...) first."""
    resolved: list[ResolvedScene] = []
    used: dict[str, int] = {}
    for entry in inputs:
        base = safe_name(entry.id if isinstance(entry, StacItem) else href_stem(entry))
        used[base] = used.get(base, 0) + 1
        name = base if used[base] == 1 else f"{base}_{used[base]}"
        if isinstance(entry, StacItem):
            resolved.append(resolve_item(entry, package, options, vrt_dir, name=name))
        else:
            resolved.append(resolve_raster(entry, package, options, vrt_dir, name=name))
    return resolved
