"""A scene's pixel grid on the map, and map measures in metres (the odc-geo GeoBox idea).

`SceneGrid` is the one description of "these pixels, there": CRS, north-up affine transform
and shape. Every raster geoseg reads or writes has one; a pixel window of a grid is again a
grid (`SceneGrid.window`), which is how an output raster is placed on its scene. Sizes come
in (row, col) order like everything else in geoseg, and in metres where a user reads them:
`res_m` for the pixel size, `gsd_m` for the ground sample distance a model package records,
`pixel_area_m2` for areas. Geographic CRSs are measured at the grid's centre latitude (sizes)
or on the ellipsoid (areas, perimeters).

`map_xy` is GDAL's pixel-to-map formula in GDAL's evaluation order, so geometries traced in
pixel space get exactly the coordinates GDAL's polygonizer gives them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import pyproj
import shapely
from affine import Affine
from rasterio.crs import CRS

from geoseg.errors import ConfigError
from geoseg.geo.window import PixelWindow

EARTH_RADIUS_M = 6_371_008.8
"""Mean Earth radius (IUGG), for pixel sizes of geographic grids."""

METRES_PER_DEGREE = math.pi * EARTH_RADIUS_M / 180
"""Length of one degree of latitude (and of longitude at the equator) on that sphere."""


@dataclass(frozen=True)
class SceneGrid:
    """A north-up grid of ``height`` x ``width`` pixels placed on the map by ``transform``."""

    crs: CRS
    transform: Affine
    height: int
    width: int

    @property
    def shape(self) -> tuple[int, int]:
        """(height, width) in pixels."""
        return (self.height, self.width)

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        """(left, bottom, right, top) in CRS units."""
        return self.window_bounds(PixelWindow(0, 0, self.height, self.width))

    def window_transform(self, window: PixelWindow) -> Affine:
        """Affine transform of a pixel window of this grid (same pixels, shifted origin)."""
        return self.transform @ Affine.translation(window.col_off, window.row_off)

    def window_bounds(self, window: PixelWindow) -> tuple[float, float, float, float]:
        """(left, bottom, right, top) of a pixel window of this grid, in CRS units."""
        transform = self.window_transform(window)
        x0, y0 = transform @ (0, 0)
        x1, y1 = transform @ (window.width, window.height)
        return (min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1))

    def window(self, window: PixelWindow) -> SceneGrid:
        """The grid of a pixel window: where an output raster of that window lies."""
        return SceneGrid(self.crs, self.window_transform(window), window.height, window.width)

    def resampled(self, factor: float) -> SceneGrid:
        """The same area on pixels ``factor`` times as large, keeping this grid's origin.

        transform' = transform scaled by ``factor`` (a' = a·f, e' = e·f, same c, f);
        height' = ceil(height / factor), width' = ceil(width / factor), so the new grid
        covers every pixel of this one (its last row/column may reach a little beyond).
        """
        t = self.transform
        scaled = Affine(t.a * factor, 0.0, t.c, 0.0, t.e * factor, t.f)
        eps = 1e-9  # 3 x 20 m / 10 m is 6, not 6.000000001
        return SceneGrid(
            self.crs,
            scaled,
            math.ceil(self.height / factor - eps),
            math.ceil(self.width / factor - eps),
        )

    @property
    def res_m(self) -> tuple[float, float]:
        """Pixel (height, width) in metres; for a geographic CRS at the centre latitude."""
        rx, ry = abs(self.transform.a), abs(self.transform.e)
        if self.crs.is_geographic:
            return (ry * METRES_PER_DEGREE, rx * METRES_PER_DEGREE * math.cos(self._centre_lat))
        to_m = self.crs.linear_units_factor[1]
        return (ry * to_m, rx * to_m)

    @property
    def gsd_m(self) -> float:
        """Ground sample distance: the mean of the pixel's width and height in metres."""
        if self.crs.is_geographic:
            height_m, width_m = self.res_m
            return (width_m + height_m) / 2
        # mean in CRS units, then scaled: the float that packages have always recorded
        rx, ry = abs(self.transform.a), abs(self.transform.e)
        return (rx + ry) / 2 * self.crs.linear_units_factor[1]

    @cached_property
    def pixel_area_m2(self) -> float:
        """Area of one pixel in m²: exact for a projected CRS, the centre pixel's if geographic."""
        row, col = self.height // 2, self.width // 2
        pixel = map_xy(np.array([shapely.box(col, row, col + 1, row + 1)]), self.transform)
        area, _ = measure_m(pixel, pyproj.CRS.from_wkt(self.crs.to_wkt()))
        return float(area[0])

    @property
    def _centre_lat(self) -> float:
        _, bottom, _, top = self.bounds
        return math.radians((bottom + top) / 2)


def map_xy(geometries: np.ndarray, transform: Affine) -> np.ndarray:
    """Geometries in pixel (col, row) coordinates mapped to the CRS of ``transform``.

    GDAL's formula and evaluation order (``x = c + a*col + b*row``), vertex for vertex.
    """
    return shapely.transform(
        np.asarray(geometries, dtype=object), lambda xy: affine_xy(xy, transform)
    )


def affine_xy(xy: np.ndarray, transform: Affine) -> np.ndarray:
    """(n, 2) pixel (col, row) coordinates -> (n, 2) map coordinates, as GDAL computes them."""
    a, b, c, d, e, f = tuple(transform)[:6]
    col, row = xy[:, 0], xy[:, 1]
    return np.column_stack((c + a * col + b * row, f + d * col + e * row))


def horizontal_crs(crs: pyproj.CRS) -> pyproj.CRS:
    """The horizontal part of a bound or compound CRS (areas are measured in it)."""
    if crs.is_bound:
        crs = crs.source_crs
    if crs.is_compound:
        crs = crs.sub_crs_list[0]
    return crs


def measure_m(geometries: np.ndarray, crs: pyproj.CRS) -> tuple[np.ndarray, np.ndarray]:
    """Area (m²) and perimeter (m, holes included) of polygons in ``crs``.

    Projected CRS: planar measures scaled by the linear unit (feet -> metres). Geographic CRS:
    geodesic measures on the CRS's ellipsoid.
    """
    crs = horizontal_crs(crs)
    geometries = np.asarray(geometries, dtype=object)
    if crs.is_geographic:
        geod = crs.get_geod()
        if geod is None:
            raise ConfigError(f"CRS {crs.name!r} has no ellipsoid; cannot compute areas")
        # Shells CCW, holes CW, so hole areas are subtracted. pyproj's perimeter leaves holes
        # out; measure every ring's geodesic length instead, as the planar branch does.
        oriented = shapely.orient_polygons(geometries)
        area = np.array(
            [abs(geod.geometry_area_perimeter(g)[0]) for g in oriented], dtype=np.float64
        )
        perimeter = np.array(
            [geod.geometry_length(b) for b in shapely.boundary(geometries)], dtype=np.float64
        )
        return area.reshape(-1), perimeter.reshape(-1)
    if crs.is_projected:
        to_m = crs.axis_info[0].unit_conversion_factor
        return shapely.area(geometries) * to_m**2, shapely.length(geometries) * to_m
    raise ConfigError(
        f"CRS {crs.name!r} is neither projected nor geographic: areas in m² are undefined; "
        "reproject the raster to a projected CRS"
    )
