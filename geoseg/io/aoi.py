"""Areas of interest: read and validate, reproject to a scene CRS, turn into windows and masks.

An AOI is one (multi)polygon in a known CRS, read with pyogrio from any OGR vector format
(GeoJSON, GeoPackage, shapefile, ...). All of its polygon features are unioned.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyogrio
import pyogrio.errors
import shapely
from affine import Affine
from pyproj import Transformer
from rasterio.crs import CRS
from rasterio.features import geometry_mask
from shapely.geometry.base import BaseGeometry

from geoseg.errors import AoiError, option
from geoseg.geo.scene import SceneGrid
from geoseg.geo.window import PixelWindow

_POLYGONAL = ("Polygon", "MultiPolygon")

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Aoi:
    """The union of an AOI file's polygons, in the file's CRS."""

    path: Path
    geometry: BaseGeometry
    crs: CRS


def aoi_layer(path: Path, layer: str | None) -> str | None:
    """The layer to read: ``layer`` if the file has it; refuse to guess among several."""
    try:
        names = [str(n) for n in pyogrio.list_layers(path)[:, 0]]
    except (pyogrio.errors.DataSourceError, OSError):
        return layer  # unreadable: `read_aoi` says why
    if layer is not None and layer not in names:
        raise AoiError(
            f"{path}: no layer {layer!r} (layers: {', '.join(names)}); "
            f"pass one of them with {option('aoi_layer')}"
        )
    if layer is None and len(names) > 1:
        raise AoiError(
            f"{path}: the file has {len(names)} layers ({', '.join(names)}); choose the AOI "
            f"with {option('aoi_layer')} NAME"
        )
    return layer


def read_aoi(path: Path | str, layer: str | None = None) -> Aoi:
    """Read an AOI file (its ``layer``); refuse missing files, files without CRS, empty
    geometry, and a multi-layer file without a layer named.

    Invalid polygons are repaired (`repair_polygon`) with a warning.
    """
    path = Path(path)
    if not path.exists():
        raise AoiError(
            f"{path}: AOI file not found; pass an existing GeoJSON/GPKG/SHP with {option('aoi')}"
        )
    layer = aoi_layer(path, layer)
    try:
        meta, _, wkb, _ = pyogrio.raw.read(path, layer=layer, read_geometry=True)
    except (pyogrio.errors.DataSourceError, pyogrio.errors.DataLayerError, OSError) as exc:
        # GDAL names the file again and suggests driver prefixes: keep only what went wrong
        reason = str(exc).splitlines()[0].split(".;")[0].replace(f"'{path}' ", "")
        raise AoiError(
            f"{path}: cannot read the AOI ({reason}); "
            "pass a GeoJSON, GeoPackage or shapefile with polygon features"
        ) from None
    if wkb is None or meta.get("geometry_type") is None:
        raise AoiError(
            f"{path}: the file has no geometry column (a table, not a map layer); "
            "pass a GeoJSON, GeoPackage or shapefile with polygon features"
        )
    if not meta.get("crs"):
        raise AoiError(
            f"{path}: the AOI has no CRS; save it with one (e.g. EPSG:4326 GeoJSON, or add a .prj)"
        )
    geoms = [g for g in shapely.from_wkb(wkb) if g is not None and not g.is_empty]
    if not geoms:
        raise AoiError(f"{path}: the AOI has no geometry; draw at least one polygon")
    for i, geom in enumerate(geoms):
        if geom.geom_type not in _POLYGONAL:
            raise AoiError(
                f"{path}: feature {i} is a {geom.geom_type}; an AOI must be polygons "
                "(buffer points/lines into polygons first)"
            )
    geoms = [repair_polygon(g, f"{path}: feature {i}") for i, g in enumerate(geoms)]
    union = shapely.union_all(geoms)
    if union.is_empty or union.area == 0:
        raise AoiError(f"{path}: the AOI polygons have zero area; draw a real polygon")
    return Aoi(path=path, geometry=union, crs=CRS.from_user_input(meta["crs"]))


def repair_polygon(geom: BaseGeometry, where: str) -> BaseGeometry:
    """``geom`` if valid, else its polygonal part after `shapely.make_valid`, with a warning.

    A self-intersecting outline (a bow-tie drawn by hand) still says which area is meant, so
    it is repaired rather than refused; the warning names the feature so it can be checked.
    Lines or points that the repair splits off are dropped: an AOI is an area.
    """
    if geom.is_valid:
        return geom
    reason = shapely.is_valid_reason(geom)
    parts = shapely.get_parts(shapely.make_valid(geom))
    polygons = [p for p in parts if p.geom_type in _POLYGONAL]
    repaired = shapely.union_all(polygons) if polygons else shapely.Polygon()
    log.warning(
        "%s is an invalid polygon (%s); repaired it with shapely.make_valid into %d polygon(s) "
        "(area %.6g square CRS units); check the AOI (QGIS 'Fix geometries') if that is not "
        "what you meant",
        where,
        reason,
        len(shapely.get_parts(repaired)),
        repaired.area,
    )
    return repaired


def aoi_in_crs(aoi: Aoi, crs: CRS) -> BaseGeometry:
    """The AOI reprojected to ``crs``, densified first so straight edges bend correctly."""
    if aoi.crs == crs:
        return aoi.geometry
    minx, miny, maxx, maxy = aoi.geometry.bounds
    step = max(maxx - minx, maxy - miny) / 200 or 1.0
    dense = shapely.segmentize(aoi.geometry, step)
    transformer = Transformer.from_crs(aoi.crs.to_wkt(), crs.to_wkt(), always_xy=True)
    projected = shapely.transform(dense, lambda xy: np.column_stack(transformer.transform(*xy.T)))
    if not np.all(np.isfinite(shapely.get_coordinates(projected))):
        raise AoiError(
            f"{aoi.path}: the AOI cannot be reprojected to {crs.to_string()} (it lies outside "
            "that CRS's area of use); use scenes that cover the AOI"
        )
    return shapely.make_valid(projected) if not projected.is_valid else projected


def aoi_window(geometry: BaseGeometry, grid: SceneGrid) -> PixelWindow | None:
    """The smallest pixel window of ``grid`` holding every pixel centre in the AOI's bounds.

    None if the AOI misses the scene or lies between pixel centres.
    """
    footprint = shapely.box(*grid.bounds)
    part = geometry.intersection(footprint)
    if part.is_empty:
        return None
    inverse = ~grid.transform
    minx, miny, maxx, maxy = part.bounds
    corners = [inverse @ xy for xy in ((minx, miny), (minx, maxy), (maxx, miny), (maxx, maxy))]
    cols, rows = [c for c, _ in corners], [r for _, r in corners]
    # pixel (r, c) has its centre at r + 0.5: keep the centres inside the bounding box
    r0 = max(0, math.ceil(min(rows) - 0.5))
    c0 = max(0, math.ceil(min(cols) - 0.5))
    r1 = min(grid.height, math.floor(max(rows) - 0.5) + 1)
    c1 = min(grid.width, math.floor(max(cols) - 0.5) + 1)
    if r1 <= r0 or c1 <= c0:
        return None
    return PixelWindow(r0, c0, r1 - r0, c1 - c0)


def aoi_mask(geometry: BaseGeometry, transform: Affine, shape: tuple[int, int]) -> np.ndarray:
    """Bool array (rows, cols): True where the pixel centre lies inside the AOI."""
    if shape[0] == 0 or shape[1] == 0:
        return np.zeros(shape, dtype=bool)
    return geometry_mask([geometry], out_shape=shape, transform=transform, invert=True)


def widen_aoi(aoi: BaseGeometry, margin: float) -> BaseGeometry:
    """The AOI grown by ``margin`` (its CRS units), corners kept square; 0: as it is."""
    return aoi.buffer(margin, join_style="mitre") if margin else aoi
