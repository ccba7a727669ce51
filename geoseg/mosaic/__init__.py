"""One map per AOI from overlapping scenes (`--mosaic`): grid, per-pixel choice, build.

`grid` places the mosaic (one projected CRS, the model GSD, the scenes' own pixel lines, the
AOI's bounds); `choose` picks one scene per pixel (valid over masked, then the highest
confidence or the newest); `place` reads a scene on the mosaic grid (copied, or warped by
nearest neighbour); `build` streams row bands of every scene's outputs into ``OUT/mosaic/``
and vectorizes its class raster.
"""

from geoseg.mosaic.build import MosaicSource, write_mosaic
from geoseg.mosaic.choose import SOURCE_NODATA, choose_pixels
from geoseg.mosaic.grid import mosaic_crs, mosaic_grid, utm_crs

__all__ = [
    "SOURCE_NODATA",
    "MosaicSource",
    "choose_pixels",
    "mosaic_crs",
    "mosaic_grid",
    "utm_crs",
    "write_mosaic",
]
