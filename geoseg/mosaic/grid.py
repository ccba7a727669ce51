"""Where a mosaic lies: one projected CRS, the model GSD, the AOI's bounds (pure)."""

from __future__ import annotations

import math
from collections.abc import Sequence

from affine import Affine
from pyproj import Transformer
from rasterio.crs import CRS
from rasterio.errors import CRSError
from shapely.geometry.base import BaseGeometry

from geoseg.errors import ConfigError, option
from geoseg.geo.scene import SceneGrid
from geoseg.io.aoi import Aoi


def utm_crs(lon: float, lat: float) -> CRS:
    """The WGS 84 / UTM zone of a point: EPSG 326zz north of the equator, 327zz south.

    zone = floor((lon + 180) / 6) + 1, clamped to 1..60 (lon = 180 is zone 60).
    """
    zone = min(60, max(1, math.floor((lon + 180.0) / 6.0) + 1))
    return CRS.from_epsg((32600 if lat >= 0 else 32700) + zone)


def mosaic_crs(aoi: Aoi, crs: str | None) -> CRS:
    """``crs`` if given (a projected CRS, else refused), else the UTM zone of the AOI's
    centroid."""
    if crs is None:
        centroid = aoi.geometry.centroid
        to_wgs84 = Transformer.from_crs(aoi.crs.to_wkt(), "EPSG:4326", always_xy=True)
        lon, lat = to_wgs84.transform(centroid.x, centroid.y)
        return utm_crs(lon, lat)
    try:
        chosen = CRS.from_user_input(crs)
    except CRSError:
        raise ConfigError(
            f"{option('crs')} {crs}: not a CRS GDAL knows; give one as EPSG:<code> (e.g. the "
            "UTM zone of the AOI, EPSG:326zz north / 327zz south)"
        ) from None
    if not chosen.is_projected:
        raise ConfigError(
            f"{option('crs')} {crs}: a geographic CRS (degrees) cannot hold a mosaic of square "
            "pixels at the model GSD; give a projected one, e.g. the UTM zone of the AOI "
            "(EPSG:326zz north / 327zz south), or leave the option out to use it"
        )
    return chosen


def mosaic_grid(
    geometry: BaseGeometry, crs: CRS, pixel_m: float, phase: tuple[float, float] = (0.0, 0.0)
) -> SceneGrid:
    """The grid over ``geometry``'s bounds (in ``crs``) at ``pixel_m``, on pixel lines at
    ``phase`` (x, y) past multiples of the pixel size.

    With p = ``pixel_m`` in CRS units and phase (px, py): left = floor((minx - px) / p) p + px,
    top = ceil((maxy - py) / p) p + py, width = ceil((maxx - left) / p),
    height = ceil((top - miny) / p). Scenes whose pixel lines are the grid's are copied, not
    resampled (phase 0 suits Sentinel-2; Landsat's lines lie 15 m past multiples of 30 m).
    """
    p = pixel_m / crs.linear_units_factor[1]
    px, py = phase
    minx, miny, maxx, maxy = geometry.bounds
    left = math.floor((minx - px) / p + 1e-9) * p + px
    top = math.ceil((maxy - py) / p - 1e-9) * p + py
    width = max(1, math.ceil((maxx - left) / p - 1e-9))
    height = max(1, math.ceil((top - miny) / p - 1e-9))
    return SceneGrid(crs, Affine(p, 0.0, left, 0.0, -p, top), height, width)


def grid_phase(scenes: Sequence[SceneGrid], crs: CRS, pixel_m: float) -> tuple[float, float]:
    """The phase of the pixel lines of the scenes already in ``crs`` at ``pixel_m`` (north
    up), that of the most pixels when they differ, so those scenes are copied into the
    mosaic; (0, 0) when there is none."""
    p = pixel_m / crs.linear_units_factor[1]
    pixels: dict[tuple[float, float], int] = {}
    for grid in scenes:
        t = grid.transform
        if grid.crs != crs or (t.b, t.d) != (0, 0):
            continue
        if not (math.isclose(t.a, p, rel_tol=1e-9) and math.isclose(-t.e, p, rel_tol=1e-9)):
            continue
        key = (_phase(t.c, p), _phase(t.f, p))
        pixels[key] = pixels.get(key, 0) + grid.height * grid.width
    if not pixels:
        return (0.0, 0.0)
    return max(pixels, key=lambda k: (pixels[k], -k[0], -k[1]))


def grid_phase_of(grid: SceneGrid) -> tuple[float, float]:
    """The phase (x, y) of a north-up grid's pixel lines past multiples of its pixel size."""
    t = grid.transform
    return (_phase(t.c, t.a), _phase(t.f, -t.e))


def _phase(value: float, p: float) -> float:
    """``value`` mod ``p`` in [0, p), to the micrometre (29.9999999 of 30 m is 0)."""
    return round(value % p, 6) % p


def whole_pixel_shift(grid: SceneGrid, scene: SceneGrid) -> tuple[int, int] | None:
    """(rows, cols) from the mosaic's pixel (0, 0) to the scene's, when both grids share CRS,
    pixel size and pixel lines; else None (the scene must be warped)."""
    t, g = scene.transform, grid.transform
    if scene.crs != grid.crs or (t.b, t.d, g.b, g.d) != (0, 0, 0, 0):
        return None
    if not (math.isclose(t.a, g.a, rel_tol=1e-9) and math.isclose(t.e, g.e, rel_tol=1e-9)):
        return None
    cols, rows = (t.c - g.c) / g.a, (t.f - g.f) / g.e
    if abs(cols - round(cols)) > 1e-6 or abs(rows - round(rows)) > 1e-6:
        return None
    return round(rows), round(cols)


def aoi_margin(grid: SceneGrid, scene: SceneGrid) -> float:
    """How far (in the scene's CRS units) beyond the AOI a scene must be predicted so that
    every mosaic pixel centre inside the AOI finds its nearest scene pixel predicted: 0 on the
    mosaic's pixel lines (the centres coincide), else one scene pixel diagonal (the nearest
    pixel's centre lies within half of one, plus the AOI edge's own bend between CRSs)."""
    if whole_pixel_shift(grid, scene) is not None:
        return 0.0
    t = scene.transform
    return math.hypot(math.hypot(t.a, t.d), math.hypot(t.b, t.e))
