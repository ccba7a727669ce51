"""Synthetic scenes on disk: tiled GeoTIFFs written block by block, the AOI and its GeoJSON.

`write_synthetic_scene` writes scene.tif, labels.tif and aoi.geojson into one folder; files
appear under their final names only when complete.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rasterio
import shapely
from pyproj import CRS, Transformer
from rasterio.windows import Window
from shapely.geometry import Polygon, mapping
from shapely.geometry.polygon import orient

from geoseg.classes import CLASS_NODATA, colormap
from geoseg.errors import ConfigError, OutputError
from geoseg.io.outputs import classes_tags
from geoseg.synthetic.paint import render, size_pair
from geoseg.synthetic.spec import (
    BAND_NAMES,
    IMAGE_NODATA,
    SYNTHETIC_CLASSES,
    LandscapeSpec,
    make_spec,
    parameter_rng,
)

TILE_PX = 256
"""GeoTIFF block size of written scenes."""


# ---------------------------------------------------------------------------------------------
# Files.


def _partial(path: Path) -> Path:
    """Temporary name beside `path`; renamed to `path` once the file is complete."""
    return path.with_name(path.name + ".partial")


REFLECTANCE_SCALE = 1e-4
"""The synthetic bands are surface reflectance stored as reflectance x 10000."""


def write_scene(
    spec: LandscapeSpec, image_path: str | Path, labels_path: str | Path, block_px: int = 1024
) -> None:
    """Write the scene as tiled, DEFLATE-compressed GeoTIFFs, rendering one block at a time.

    Blocks of block_px x block_px are rendered and written in row-major order, so memory stays
    bounded by the block, whatever the scene size. Files appear under their final names only
    when complete.
    """
    if block_px <= 0 or block_px % TILE_PX:
        raise ConfigError(f"block_px={block_px} must be a positive multiple of {TILE_PX}")
    image_path, labels_path = Path(image_path), Path(labels_path)
    common = {
        "driver": "GTiff",
        "height": spec.height_px,
        "width": spec.width_px,
        "crs": spec.crs,
        "transform": spec.transform,
        "tiled": True,
        "blockxsize": TILE_PX,
        "blockysize": TILE_PX,
        "compress": "deflate",
        "predictor": 2,
    }
    tmp_image, tmp_labels = _partial(image_path), _partial(labels_path)
    try:
        with (
            rasterio.open(
                tmp_image, "w", count=4, dtype="uint16", nodata=IMAGE_NODATA, **common
            ) as img_dst,
            rasterio.open(
                tmp_labels, "w", count=1, dtype="uint8", nodata=CLASS_NODATA, **common
            ) as lab_dst,
        ):
            img_dst.descriptions = BAND_NAMES
            # surface reflectance x 10000, declared so runs can convert other units into it
            img_dst.scales = (REFLECTANCE_SCALE,) * len(BAND_NAMES)
            img_dst.offsets = (0.0,) * len(BAND_NAMES)
            lab_dst.set_band_description(1, "land cover")
            lab_dst.write_colormap(1, colormap(SYNTHETIC_CLASSES))
            lab_dst.update_tags(**classes_tags(SYNTHETIC_CLASSES))
            for row in range(0, spec.height_px, block_px):
                h = min(block_px, spec.height_px - row)
                for col in range(0, spec.width_px, block_px):
                    w = min(block_px, spec.width_px - col)
                    image, labels = render(spec, row, col, h, w)
                    window = Window(col, row, w, h)
                    img_dst.write(image, window=window)
                    lab_dst.write(labels, 1, window=window)
        tmp_image.replace(image_path)
        tmp_labels.replace(labels_path)
    except OSError as exc:
        raise OutputError(f"cannot write synthetic scene to {image_path.parent}: {exc}") from exc
    finally:
        tmp_image.unlink(missing_ok=True)
        tmp_labels.unlink(missing_ok=True)


# ---------------------------------------------------------------------------------------------
# Area of interest.


def aoi_polygon(spec: LandscapeSpec, seed: int | None = None) -> Polygon:
    """An irregular, non-convex AOI well inside the scene covering 50-70 % of it (scene CRS).

    A star-shaped ring of 12-20 vertices around the scene centre on a rounded-rectangle
    outline, with every other vertex pulled inwards so the polygon is not convex, then scaled
    to a drawn target area.
    """
    rng = parameter_rng(spec.seed if seed is None else seed, 0xA01)
    n = int(rng.integers(12, 21))
    angles = (np.arange(n) + rng.uniform(-0.3, 0.3, n)) * (2 * np.pi / n)
    # Superellipse outline (exponent 6) is close to the scene rectangle.
    c, s = np.cos(angles), np.sin(angles)
    outline = 1.0 / (np.abs(c) ** 6 + np.abs(s) ** 6) ** (1 / 6)
    dents = np.where(np.arange(n) % 2 == 1, rng.uniform(0.68, 0.85, n), rng.uniform(0.95, 1.0, n))
    radius = outline * dents
    half_h, half_w = spec.height_px / 2, spec.width_px / 2
    unit_rows, unit_cols = s * radius, c * radius
    ring = Polygon(zip(unit_cols, unit_rows, strict=True))
    target = float(rng.uniform(0.55, 0.65))
    scale = min(
        math.sqrt(target * 4.0 / ring.area),
        0.9 / float(np.max(np.maximum(np.abs(unit_rows), np.abs(unit_cols)))),
    )
    cols_px = half_w + scale * half_w * unit_cols
    rows_px = half_h + scale * half_h * unit_rows
    xs, ys = spec.transform @ (cols_px, rows_px)
    return orient(Polygon(zip(xs, ys, strict=True)), sign=1.0)


def write_aoi_geojson(polygon: Polygon, src_crs: str | CRS, path: str | Path) -> None:
    """Write the polygon as an RFC 7946 GeoJSON FeatureCollection in EPSG:4326 (lon, lat)."""
    transformer = Transformer.from_crs(CRS.from_user_input(src_crs), "EPSG:4326", always_xy=True)
    lonlat = orient(shapely.transform(polygon, transformer.transform, interleaved=False), sign=1.0)
    collection = {
        "type": "FeatureCollection",
        "features": [
            {
                "type": "Feature",
                "properties": {"name": "synthetic AOI"},
                "geometry": mapping(lonlat),
            }
        ],
    }
    path = Path(path)
    try:
        path.write_text(json.dumps(collection, indent=1))
    except OSError as exc:
        raise OutputError(f"cannot write AOI to {path}: {exc}") from exc


# ---------------------------------------------------------------------------------------------
# A scene on disk.


@dataclass(frozen=True)
class SyntheticScene:
    """Paths of a written synthetic scene and the spec it was drawn from."""

    image_path: Path
    labels_path: Path
    aoi_path: Path
    spec: LandscapeSpec


def write_synthetic_scene(
    out_dir: str | Path, size_px: int | tuple[int, int], seed: int, **spec_options: object
) -> SyntheticScene:
    """Write out_dir/scene.tif, labels.tif and aoi.geojson for a seeded synthetic scene."""
    out_dir = Path(out_dir)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot create output folder {out_dir}: {exc}") from exc
    height, width = size_pair(size_px)
    spec = make_spec(height, width, seed, **spec_options)  # type: ignore[arg-type]
    scene = SyntheticScene(
        out_dir / "scene.tif", out_dir / "labels.tif", out_dir / "aoi.geojson", spec
    )
    write_scene(spec, scene.image_path, scene.labels_path)
    write_aoi_geojson(aoi_polygon(spec), spec.crs, scene.aoi_path)
    return scene
