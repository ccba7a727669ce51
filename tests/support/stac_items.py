"""STAC items of per-band COGs, modelled on real catalogues, built from a synthetic scene.

The synthetic scene (geoseg.synthetic: 4-band uint16 blue/green/red/nir, surface reflectance
x 10000, nodata 0, 10 m pixels in UTM) is split into one single-band COG per band, stored the
way each catalogue stores it, plus its cloud mask, and described by a STAC 1.0.0 Item dict:

- `earth_search_item`: Earth Search v1 ``sentinel-2-l2a``: assets blue/green/red/nir (10 m)
  and scl (20 m); DN stored with +1000 (processing baseline >= 04.00) and declared in
  raster:bands (scale 0.0001, offset -0.1).
- `planetary_item`: Planetary Computer ``sentinel-2-l2a``: assets B02/B03/B04/B08 and SCL,
  the same +1000 storage but no raster:bands at all: only ``s2:processing_baseline`` tells.
- `landsat_item`: Landsat Collection 2 Level-2: assets SR_B2/SR_B3/SR_B4/SR_B5 and QA_PIXEL;
  DN = round((reflectance + 0.2) / 2.75e-05), raster:bands scale 2.75e-05 offset -0.2.

Hrefs are absolute local paths, or ``href_base`` + "/" + file name (an http:// URL of a test
nginx, an s3:// prefix of a test moto server). Nothing here touches the network.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from affine import Affine
from rasterio.crs import CRS
from rasterio.enums import Resampling
from rasterio.warp import transform_geom
from shapely.geometry import box, shape
from shapely.geometry.polygon import orient

COG_TYPE = "image/tiff; application=geotiff; profile=cloud-optimized"
STAC_VERSION = "1.0.0"
BLOCK_PX = 256
S2_DN_OFFSET = 1000
"""Sentinel-2 L2A DN offset from processing baseline 04.00 on (reflectance = (DN-1000)/1e4)."""
S2_SCALE, S2_OFFSET = 0.0001, -0.1
LANDSAT_SCALE, LANDSAT_OFFSET = 2.75e-05, -0.2
SCENE_SCALE = 1e-4
"""Synthetic scene DN -> surface reflectance."""

SCL_NODATA, SCL_VEGETATION, SCL_CLOUD_HIGH = 0, 4, 9
"""Sentinel-2 scene classification values used here (no data, vegetation, cloud high prob.)."""
QA_FILL, QA_CLEAR, QA_CLOUD = 1, 21824, 22280
"""Landsat QA_PIXEL words: fill (bit 0), clear land (bit 6, low confidences), cloud (bit 3,
high cloud confidence). Bits: 0 fill, 1 dilated cloud, 2 cirrus, 3 cloud, 4 cloud shadow."""

CloudBox = tuple[int, int, int, int]
"""(row0, row1, col0, col1) in 10 m scene pixels, end-exclusive."""

EXT = "https://stac-extensions.github.io"


@dataclass(frozen=True)
class Band:
    """One spectral band of a catalogue: asset key, file stem, eo:bands entry."""

    key: str
    stem: str
    name: str
    common_name: str
    title: str
    center_wavelength: float

    def eo_band(self) -> dict[str, Any]:
        """Its eo:bands entry."""
        return {
            "name": self.name,
            "common_name": self.common_name,
            "description": self.title,
            "center_wavelength": self.center_wavelength,
        }


EARTH_SEARCH_BANDS = (
    Band("blue", "B02", "blue", "blue", "Blue (band 2)", 0.49),
    Band("green", "B03", "green", "green", "Green (band 3)", 0.56),
    Band("red", "B04", "red", "red", "Red (band 4)", 0.665),
    Band("nir", "B08", "nir", "nir", "NIR 1 (band 8)", 0.842),
)
PLANETARY_BANDS = (
    Band("B02", "B02", "B02", "blue", "Band 2 - Blue", 0.49),
    Band("B03", "B03", "B03", "green", "Band 3 - Green", 0.56),
    Band("B04", "B04", "B04", "red", "Band 4 - Red", 0.665),
    Band("B08", "B08", "B08", "nir", "Band 8 - NIR", 0.842),
)
LANDSAT_BANDS = (
    Band("SR_B2", "SR_B2", "SR_B2", "blue", "Blue Band (B2)", 0.48),
    Band("SR_B3", "SR_B3", "SR_B3", "green", "Green Band (B3)", 0.56),
    Band("SR_B4", "SR_B4", "SR_B4", "red", "Red Band (B4)", 0.65),
    Band("SR_B5", "SR_B5", "SR_B5", "nir08", "Near Infrared Band 0.8 (B5)", 0.86),
)


# ---------------------------------------------------------------------------------------------
# Grids and COGs.


@dataclass(frozen=True)
class Grid:
    """A raster grid: CRS, north-up transform and shape."""

    crs: CRS
    transform: Affine
    height: int
    width: int

    @property
    def res_m(self) -> float:
        """The pixel size."""
        return float(self.transform.a)

    def proj_fields(self) -> dict[str, Any]:
        """The asset's proj:shape and proj:transform."""
        return {"proj:shape": [self.height, self.width], "proj:transform": list(self.transform)[:6]}


def scene_grid(scene: Path, factor: int = 1) -> Grid:
    """The scene's grid with pixels ``factor`` times larger (same origin, shape // factor)."""
    with rasterio.open(scene) as src:
        return Grid(
            src.crs,
            src.transform @ Affine.scale(factor),
            src.height // factor,
            src.width // factor,
        )


def read_scene(scene: Path, factor: int = 1) -> np.ndarray:
    """The scene's bands (bands, rows, cols) on `scene_grid` (2 x 2 averages for factor 2;
    GDAL leaves nodata out of each average and keeps 0 where all four are nodata)."""
    grid = scene_grid(scene, factor)
    with rasterio.open(scene) as src:
        return src.read(
            out_shape=(src.count, grid.height, grid.width), resampling=Resampling.average
        )


def write_cog(
    path: Path, data: np.ndarray, grid: Grid, *, nodata: int | None, description: str = ""
) -> Path:
    """Write a single-band COG (256 px blocks, DEFLATE) of ``data`` on ``grid``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with rasterio.open(
        path,
        "w",
        driver="COG",
        height=grid.height,
        width=grid.width,
        count=1,
        dtype=data.dtype,
        crs=grid.crs,
        transform=grid.transform,
        nodata=nodata,
        blocksize=BLOCK_PX,
        compress="DEFLATE",
    ) as dst:
        dst.write(data, 1)
        if description:
            dst.set_band_description(1, description)
    return path


def stored_dn(
    values: np.ndarray,
    dn_offset: int = 0,
    transform_dn: Callable[[np.ndarray], np.ndarray] | None = None,
) -> np.ndarray:
    """Scene DN -> stored uint16 DN: ``transform_dn`` then ``+ dn_offset`` on valid pixels,
    clipped to 1..65535 there; nodata (0) stays 0."""
    valid = values != 0
    dn = values.astype(np.float64)
    if transform_dn is not None:
        dn = np.asarray(transform_dn(dn), dtype=np.float64)
    dn = np.clip(np.rint(dn + dn_offset), 1, np.iinfo(np.uint16).max)
    return np.where(valid, dn, 0).astype(np.uint16)


def write_band_cogs(
    scene: Path,
    out_dir: Path,
    names: Sequence[str],
    *,
    dn_offset: int = 0,
    factor: int = 1,
    transform_dn: Callable[[np.ndarray], np.ndarray] | None = None,
    suffix: str = ".tif",
) -> dict[str, Path]:
    """One uint16 COG per scene band, out_dir/<names[i]><suffix>, band described names[i].

    ``factor`` 2 writes 20 m bands (2 x 2 averages); values are `stored_dn`; nodata 0.
    """
    bands = read_scene(scene, factor)
    if len(names) != len(bands):
        raise ValueError(f"{len(names)} names for {len(bands)} bands of {scene}")
    grid = scene_grid(scene, factor)
    return {
        name: write_cog(
            out_dir / f"{name}{suffix}",
            stored_dn(band, dn_offset, transform_dn),
            grid,
            nodata=0,
            description=name,
        )
        for name, band in zip(names, bands, strict=True)
    }


def landsat_dn(values: np.ndarray) -> np.ndarray:
    """Scene DN (reflectance x 10000) -> Landsat C2 L2 DN (before clipping to uint16)."""
    return np.rint((values * SCENE_SCALE - LANDSAT_OFFSET) / LANDSAT_SCALE)


# ---------------------------------------------------------------------------------------------
# Cloud masks.


def _box_at(cloud_box: CloudBox, factor: int) -> tuple[slice, slice]:
    """A 10 m pixel box on a grid ``factor`` times coarser (every cell it touches)."""
    row0, row1, col0, col1 = cloud_box
    return slice(row0 // factor, -(-row1 // factor)), slice(col0 // factor, -(-col1 // factor))


def mask_values(
    scene: Path,
    *,
    factor: int,
    cloud_box: CloudBox | None,
    fill: int,
    clear: int,
    cloud: int,
    dtype: str,
) -> np.ndarray:
    """A mask on `scene_grid`: ``fill`` where the scene is nodata, ``cloud`` in the box (on
    valid pixels), ``clear`` elsewhere."""
    valid = read_scene(scene, factor)[0] != 0
    values = np.where(valid, clear, fill).astype(dtype)
    if cloud_box is not None:
        rows, cols = _box_at(cloud_box, factor)
        values[rows, cols] = np.where(valid[rows, cols], cloud, fill)
    return values


def scl_mask(scene: Path, *, factor: int = 2, cloud_box: CloudBox | None = None) -> np.ndarray:
    """A Sentinel-2 SCL layer (uint8): 0 no data, 4 vegetation, 9 cloud in ``cloud_box``."""
    return mask_values(
        scene,
        factor=factor,
        cloud_box=cloud_box,
        fill=SCL_NODATA,
        clear=SCL_VEGETATION,
        cloud=SCL_CLOUD_HIGH,
        dtype="uint8",
    )


def qa_pixel_mask(scene: Path, *, factor: int = 1, cloud_box: CloudBox | None = None) -> np.ndarray:
    """A Landsat QA_PIXEL layer (uint16): fill 1, clear land 21824, cloud 22280 in the box."""
    return mask_values(
        scene,
        factor=factor,
        cloud_box=cloud_box,
        fill=QA_FILL,
        clear=QA_CLEAR,
        cloud=QA_CLOUD,
        dtype="uint16",
    )


def write_mask_cog(
    path: Path, like: Path, values: np.ndarray, *, factor: int = 1, nodata: int | None = 0
) -> Path:
    """Write ``values`` (shaped like `scene_grid(like, factor)`) as a single-band COG."""
    grid = scene_grid(like, factor)
    if values.shape != (grid.height, grid.width):
        raise ValueError(f"mask of shape {values.shape} for a {grid.height} x {grid.width} grid")
    return write_cog(path, values, grid, nodata=nodata)


# ---------------------------------------------------------------------------------------------
# Item parts.


def footprint(scene: Path) -> tuple[dict[str, Any], list[float]]:
    """The scene's footprint in WGS84: GeoJSON polygon (counter-clockwise) and its bbox."""
    with rasterio.open(scene) as src:
        ring = box(*src.bounds)
        crs = src.crs
    geometry = orient(shape(transform_geom(crs, "EPSG:4326", ring.__geo_interface__)), 1.0)
    return geometry.__geo_interface__, [float(v) for v in geometry.bounds]


def href_for(path: Path, href_base: str | None) -> str:
    """The asset href of a written file: its absolute path, or href_base/<file name>."""
    if href_base is None:
        return str(path.resolve())
    return f"{href_base.rstrip('/')}/{path.name}"


def asset(
    path: Path,
    grid: Grid,
    *,
    href_base: str | None,
    title: str,
    roles: Sequence[str],
    eo_bands: list[dict[str, Any]] | None = None,
    raster_bands: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """A COG asset: href, type, title, roles, gsd, proj fields and the optional extensions."""
    result: dict[str, Any] = {
        "href": href_for(path, href_base),
        "type": COG_TYPE,
        "title": title,
        "roles": list(roles),
        "gsd": grid.res_m,
        **grid.proj_fields(),
    }
    if eo_bands is not None:
        result["eo:bands"] = eo_bands
    if raster_bands is not None:
        result["raster:bands"] = raster_bands
    return result


def raster_band(
    grid: Grid,
    *,
    data_type: str = "uint16",
    nodata: int = 0,
    scale: float | None = None,
    offset: float | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """A raster:bands entry (scale and offset only when given)."""
    band: dict[str, Any] = {
        "nodata": nodata,
        "data_type": data_type,
        "spatial_resolution": grid.res_m,
        **extra,
    }
    if scale is not None:
        band["scale"] = scale
    if offset is not None:
        band["offset"] = offset
    return band


def band_assets(
    scene: Path,
    out_dir: Path,
    bands: Sequence[Band],
    *,
    href_base: str | None,
    factor: int,
    dn_offset: int = 0,
    transform_dn: Callable[[np.ndarray], np.ndarray] | None = None,
    stem_suffix: str = "",
    suffix: str = ".tif",
    raster: Callable[[Grid], dict[str, Any]] | None = None,
    roles: Sequence[str] = ("data",),
) -> dict[str, dict[str, Any]]:
    """Write the band COGs and return their assets by key (raster:bands from ``raster``)."""
    stems = [band.stem + stem_suffix for band in bands]
    paths = write_band_cogs(
        scene,
        out_dir,
        stems,
        dn_offset=dn_offset,
        factor=factor,
        transform_dn=transform_dn,
        suffix=suffix,
    )
    grid = scene_grid(scene, factor)
    return {
        band.key: asset(
            paths[stem],
            grid,
            href_base=href_base,
            title=f"{band.title} - {grid.res_m:g}m",
            roles=roles,
            eo_bands=[band.eo_band()],
            raster_bands=None if raster is None else [raster(grid)],
        )
        for band, stem in zip(bands, stems, strict=True)
    }


def item_dict(
    scene: Path,
    *,
    item_id: str,
    collection: str,
    extensions: Sequence[str],
    properties: dict[str, Any],
    assets: dict[str, dict[str, Any]],
) -> dict[str, Any]:
    """A STAC 1.0.0 Item: the scene footprint, ``properties`` (with proj:epsg) and assets."""
    geometry, bbox = footprint(scene)
    with rasterio.open(scene) as src:
        epsg = src.crs.to_epsg()
    return {
        "type": "Feature",
        "stac_version": STAC_VERSION,
        "stac_extensions": list(extensions),
        "id": item_id,
        "collection": collection,
        "geometry": geometry,
        "bbox": bbox,
        "properties": {**properties, "proj:epsg": epsg},
        "links": [],
        "assets": assets,
    }


def s2_dn_offset(processing_baseline: str) -> int:
    """The DN offset Sentinel-2 L2A products of this processing baseline are stored with."""
    return S2_DN_OFFSET if processing_baseline >= "04.00" else 0


# ---------------------------------------------------------------------------------------------
# Catalogue items.


def earth_search_item(
    scene: Path,
    out_dir: Path,
    *,
    item_id: str = "S2A_33UUP_20240615_0_L2A",
    datetime: str = "2024-06-15T10:20:31Z",
    cloud_cover: float = 5.0,
    href_base: str | None = None,
    cloud_box: CloudBox | None = None,
    factor: int = 1,
    declare_offset: bool = True,
    processing_baseline: str = "05.00",
    collection: str = "sentinel-2-l2a",
) -> dict[str, Any]:
    """An Earth Search v1 sentinel-2-l2a item; writes B02/B03/B04/B08.tif and SCL.tif.

    DN are stored with `s2_dn_offset` (+1000 for baseline >= 04.00) and raster:bands declare
    scale 0.0001 and offset -0.1 (0 without the stored offset); ``declare_offset=False``
    leaves offset out of raster:bands (stored with it, but not declared). SCL is 20 m.
    """
    dn_offset = s2_dn_offset(processing_baseline)
    offset = (S2_OFFSET if dn_offset else 0.0) if declare_offset else None

    def raster(grid: Grid) -> dict[str, Any]:
        return raster_band(grid, scale=S2_SCALE, offset=offset, bits_per_sample=15)

    assets = band_assets(
        scene,
        out_dir,
        EARTH_SEARCH_BANDS,
        href_base=href_base,
        factor=factor,
        dn_offset=dn_offset,
        raster=raster,
        roles=("data", "reflectance"),
    )
    scl_grid = scene_grid(scene, 2)
    scl = write_mask_cog(
        out_dir / "SCL.tif", scene, scl_mask(scene, factor=2, cloud_box=cloud_box), factor=2
    )
    assets["scl"] = asset(
        scl,
        scl_grid,
        href_base=href_base,
        title="Scene classification map (SCL)",
        roles=("data",),
        raster_bands=[raster_band(scl_grid, data_type="uint8", unit="none")],
    )
    properties = {
        "datetime": datetime,
        "platform": "sentinel-2a",
        "constellation": "sentinel-2",
        "instruments": ["msi"],
        "eo:cloud_cover": cloud_cover,
        "s2:processing_baseline": processing_baseline,
        "s2:product_type": "S2MSI2A",
    }
    extensions = [
        f"{EXT}/eo/v1.1.0/schema.json",
        f"{EXT}/projection/v1.1.0/schema.json",
        f"{EXT}/raster/v1.1.0/schema.json",
    ]
    return item_dict(
        scene,
        item_id=item_id,
        collection=collection,
        extensions=extensions,
        properties=properties,
        assets=assets,
    )


def planetary_item(
    scene: Path,
    out_dir: Path,
    *,
    item_id: str = "S2A_MSIL2A_20240615T102031_R065_T33UUP_20240615T160324",
    datetime: str = "2024-06-15T10:20:31.024000Z",
    cloud_cover: float = 5.0,
    href_base: str | None = None,
    cloud_box: CloudBox | None = None,
    factor: int = 1,
    processing_baseline: str = "04.00",
    collection: str = "sentinel-2-l2a",
) -> dict[str, Any]:
    """A Planetary Computer sentinel-2-l2a item; writes B0x_<res>m.tif and SCL_20m.tif.

    DN carry `s2_dn_offset` like Earth Search, but there are no raster:bands at all: only
    ``s2:processing_baseline`` says so. SCL is 20 m.
    """
    res = 10 * factor
    assets = band_assets(
        scene,
        out_dir,
        PLANETARY_BANDS,
        href_base=href_base,
        factor=factor,
        dn_offset=s2_dn_offset(processing_baseline),
        stem_suffix=f"_{res}m",
    )
    scl_grid = scene_grid(scene, 2)
    scl = write_mask_cog(
        out_dir / "SCL_20m.tif", scene, scl_mask(scene, factor=2, cloud_box=cloud_box), factor=2
    )
    assets["SCL"] = asset(
        scl, scl_grid, href_base=href_base, title="Scene classfication map (SCL)", roles=("data",)
    )
    properties = {
        "datetime": datetime,
        "platform": "Sentinel-2A",
        "constellation": "Sentinel 2",
        "instruments": ["msi"],
        "eo:cloud_cover": cloud_cover,
        "s2:mgrs_tile": "33UUP",
        "s2:processing_baseline": processing_baseline,
        "s2:product_type": "S2MSI2A",
    }
    extensions = [
        f"{EXT}/eo/v1.0.0/schema.json",
        f"{EXT}/sat/v1.0.0/schema.json",
        f"{EXT}/projection/v1.0.0/schema.json",
    ]
    return item_dict(
        scene,
        item_id=item_id,
        collection=collection,
        extensions=extensions,
        properties=properties,
        assets=assets,
    )


def landsat_item(
    scene: Path,
    out_dir: Path,
    *,
    item_id: str = "LC08_L2SP_190026_20240615_20240621_02_T1",
    datetime: str = "2024-06-15T09:51:12.345000Z",
    cloud_cover: float = 5.0,
    href_base: str | None = None,
    cloud_box: CloudBox | None = None,
    factor: int = 1,
    declare_offset: bool = True,
    collection: str = "landsat-c2-l2",
) -> dict[str, Any]:
    """A Landsat C2 L2 item; writes SR_B2..SR_B5.TIF and QA_PIXEL.TIF at the bands' resolution.

    DN = round((reflectance + 0.2) / 2.75e-05), nodata 0; raster:bands declare scale 2.75e-05
    and offset -0.2 (``declare_offset=False`` leaves offset out). QA_PIXEL: fill 1 (its
    nodata), clear 21824, cloud 22280 in ``cloud_box``.
    """

    def raster(grid: Grid) -> dict[str, Any]:
        offset = LANDSAT_OFFSET if declare_offset else None
        return raster_band(grid, scale=LANDSAT_SCALE, offset=offset, unit="")

    assets = band_assets(
        scene,
        out_dir,
        LANDSAT_BANDS,
        href_base=href_base,
        factor=factor,
        transform_dn=landsat_dn,
        suffix=".TIF",
        raster=raster,
        roles=("data", "reflectance"),
    )
    grid = scene_grid(scene, factor)
    qa = write_mask_cog(
        out_dir / "QA_PIXEL.TIF",
        scene,
        qa_pixel_mask(scene, factor=factor, cloud_box=cloud_box),
        factor=factor,
        nodata=QA_FILL,
    )
    assets["QA_PIXEL"] = asset(
        qa,
        grid,
        href_base=href_base,
        title="Pixel Quality Assessment Band",
        roles=("cloud", "cloud-shadow", "snow-ice", "water-mask"),
        raster_bands=[raster_band(grid, nodata=QA_FILL, unit="bit index")],
    )
    properties = {
        "datetime": datetime,
        "platform": "landsat-8",
        "instruments": ["oli", "tirs"],
        "eo:cloud_cover": cloud_cover,
        "landsat:cloud_cover_land": cloud_cover,
        "landsat:collection_category": "T1",
        "landsat:collection_number": "02",
        "landsat:correction": "L2SP",
        "landsat:wrs_path": "190",
        "landsat:wrs_row": "026",
    }
    extensions = [
        f"{EXT}/raster/v1.0.0/schema.json",
        f"{EXT}/eo/v1.0.0/schema.json",
        f"{EXT}/projection/v1.0.0/schema.json",
    ]
    return item_dict(
        scene,
        item_id=item_id,
        collection=collection,
        extensions=extensions,
        properties=properties,
        assets=assets,
    )


# ---------------------------------------------------------------------------------------------
# Files.


def write_item(item: dict[str, Any], path: Path) -> Path:
    """Write one item as JSON."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(item, indent=1))
    return path


def write_ndjson(items: Iterable[dict[str, Any]], path: Path) -> Path:
    """Write items as newline-delimited JSON (one item a line), what `rustac serve` loads."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(item) + "\n" for item in items))
    return path


def write_item_collection(items: Iterable[dict[str, Any]], path: Path) -> Path:
    """Write items as a GeoJSON FeatureCollection (a STAC ItemCollection)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"type": "FeatureCollection", "features": list(items)}, indent=1))
    return path
