"""Preview pictures of class rasters: the map, a legend, the AOI outline and a scale bar.

A preview is read from the class raster's overviews, never from its full resolution: the
smallest overview whose long side still has `PREVIEW_MIN_PX` pixels (a COG written by
`geoseg.io.raster.write_cog` always has overviews). Only rasters whose first overview is
already smaller than that are read at full resolution, and those are small by definition.
One overview pixel is one picture pixel, so the picture is faithful to what QGIS shows at
that zoom. Drawing uses Pillow only.

Layout (pixels)::

    +--------------------------------------------------------------+
    | title                                                        |
    | +--------------------------+  legend: swatch + class name    |
    | | map (overview pixels)    |  ...                             |
    | | AOI outline, scale bar   |                                  |
    | +--------------------------+                                  |
    +--------------------------------------------------------------+
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import rasterio
import shapely
from affine import Affine
from rasterio.crs import CRS
from shapely.geometry.base import BaseGeometry

from geoseg.classes import ClassInfo
from geoseg.errors import OutputError
from geoseg.geo.scene import SceneGrid
from geoseg.io.outputs import classes_from_tags

if TYPE_CHECKING:
    from PIL.Image import Image as PilImage
    from PIL.ImageDraw import ImageDraw
    from PIL.ImageFont import FreeTypeFont

PREVIEW_MIN_PX = 512
"""Long side (px) the chosen overview must at least have."""

MARGIN_PX = 10
TITLE_PX = 26
LEGEND_PX = 190
LEGEND_ROW_PX = 22
SWATCH_PX = 14
NODATA_RGB = (235, 235, 235)
AOI_RGB = (255, 0, 255)
"""AOI outline colour: magenta, which no class palette should use."""


@dataclass(frozen=True)
class PreviewRaster:
    """Class values read from one overview level, with that level's georeferencing."""

    values: np.ndarray
    transform: Affine
    crs: CRS
    factor: int
    """Full-resolution pixels per preview pixel along each axis (1: full resolution)."""


def choose_overview(long_side_px: int, factors: Sequence[int], min_px: int) -> int | None:
    """Index of the coarsest overview whose long side is >= ``min_px``; None: full resolution.

    ``factors`` are the decimation factors of the overviews, finest first (as GDAL lists them).
    """
    chosen = None
    for index, factor in enumerate(factors):
        if math.ceil(long_side_px / factor) >= min_px:
            chosen = index
    return chosen


def read_preview(path: Path, min_px: int = PREVIEW_MIN_PX) -> PreviewRaster:
    """Band 1 of ``path`` at the overview `choose_overview` picks (opened as that level only)."""
    with rasterio.open(path) as ds:
        factors = ds.overviews(1)
        level = choose_overview(max(ds.height, ds.width), factors, min_px)
        full_width = ds.width
    options = {} if level is None else {"overview_level": level}
    with rasterio.open(path, **options) as ds:
        values = ds.read(1)
        factor = 1 if level is None else round(full_width / ds.width)
        return PreviewRaster(values, ds.transform, ds.crs, factor)


def colorize(values: np.ndarray, classes: Sequence[ClassInfo]) -> np.ndarray:
    """(rows, cols, 3) uint8 RGB: class colours, `NODATA_RGB` for nodata and unknown values."""
    lut = np.tile(np.array(NODATA_RGB, dtype=np.uint8), (256, 1))
    for c in classes:
        lut[c.id] = c.rgb
    return lut[values]


def scale_bar_length_m(max_m: float) -> float:
    """The longest round length (1, 2 or 5 times a power of ten metres) not above ``max_m``."""
    if max_m <= 0:
        raise ValueError(f"a scale bar needs a positive length, got {max_m}")
    power = 10 ** math.floor(math.log10(max_m))
    return max(step * power for step in (1, 2, 5) if step * power <= max_m)


def format_length(metres: float) -> str:
    """``250 m``, ``2 km``, ``0.5 m``: kilometres from 1 km up."""
    if metres >= 1000:
        return f"{metres / 1000:g} km"
    return f"{metres:g} m"


def aoi_rings_px(aoi: BaseGeometry, transform: Affine) -> list[np.ndarray]:
    """The AOI's exterior and interior rings as (n, 2) arrays of picture (x, y) pixels."""
    inverse = ~transform
    rings = []
    for polygon in shapely.get_parts(aoi):
        if polygon.geom_type != "Polygon":
            continue
        for ring in (polygon.exterior, *polygon.interiors):
            xy = np.asarray(ring.coords)[:, :2]
            cols, rows = inverse @ (xy[:, 0], xy[:, 1])
            rings.append(np.column_stack([cols, rows]))
    return rings


def preview_size(map_shape: tuple[int, int], n_legend_rows: int) -> tuple[int, int]:
    """Picture (width, height) for a map of ``map_shape`` (rows, cols) and a legend."""
    rows, cols = map_shape
    legend_h = n_legend_rows * LEGEND_ROW_PX
    return cols + 3 * MARGIN_PX + LEGEND_PX, TITLE_PX + max(rows, legend_h) + 2 * MARGIN_PX


def render_preview(
    raster: PreviewRaster,
    classes: Sequence[ClassInfo],
    *,
    aoi: BaseGeometry | None = None,
    title: str = "",
) -> PilImage:
    """The preview picture: coloured map, AOI outline, scale bar, legend and title."""
    from PIL import Image, ImageDraw, ImageFont

    rows, cols = raster.values.shape
    legend = list(classes)
    has_nodata = bool(np.any(~np.isin(raster.values, [c.id for c in classes])))
    width, height = preview_size((rows, cols), len(legend) + has_nodata)
    image = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default(size=13)
    x0, y0 = MARGIN_PX, TITLE_PX + MARGIN_PX
    draw.text((MARGIN_PX, 6), title, fill="black", font=font)
    image.paste(Image.fromarray(colorize(raster.values, classes), "RGB"), (x0, y0))
    if aoi is not None:
        for ring in aoi_rings_px(aoi, raster.transform):
            points = [(x0 + float(x), y0 + float(y)) for x, y in ring]
            draw.line(points, fill=AOI_RGB, width=2)
    draw.rectangle([x0 - 1, y0 - 1, x0 + cols, y0 + rows], outline=(120, 120, 120))
    _draw_scale_bar(draw, font, raster, origin=(x0, y0))
    entries = [(c.rgb, c.name) for c in legend]
    if has_nodata:
        entries.append((NODATA_RGB, "no data / outside AOI"))
    lx = x0 + cols + MARGIN_PX
    for i, (rgb, name) in enumerate(entries):
        y = y0 + i * LEGEND_ROW_PX
        draw.rectangle([lx, y, lx + SWATCH_PX, y + SWATCH_PX], fill=rgb, outline="black")
        draw.text((lx + SWATCH_PX + 6, y), name, fill="black", font=font)
    return image


def _draw_scale_bar(
    draw: ImageDraw, font: FreeTypeFont, raster: PreviewRaster, *, origin: tuple[int, int]
) -> None:
    """A black bar of a round length, at most a quarter of the map width, bottom left."""
    rows, cols = raster.values.shape
    px_m = SceneGrid(raster.crs, raster.transform, rows, cols).res_m[1]  # a pixel's width
    if cols < 8 or px_m <= 0:
        return
    length_m = scale_bar_length_m(cols / 4 * px_m)
    bar_px = max(1, round(length_m / px_m))
    label = format_length(length_m)
    x = origin[0] + 8
    y = origin[1] + rows - 10
    text_w = draw.textlength(label, font=font)
    draw.rectangle(
        [x - 4, y - 22, x + max(bar_px, text_w) + 4, y + 5], fill="white", outline="black"
    )
    draw.rectangle([x, y - 2, x + bar_px, y + 2], fill="black")
    draw.text((x, y - 20), label, fill="black", font=font)


def write_preview(
    classes_tif: Path,
    dst: Path,
    *,
    classes: Sequence[ClassInfo] | None = None,
    aoi: BaseGeometry | None = None,
    title: str | None = None,
    min_px: int = PREVIEW_MIN_PX,
) -> Path:
    """Write ``dst`` (PNG) for a class raster; ``aoi`` in the raster's CRS is outlined.

    Classes default to those stored in the raster's tags by `geoseg run`.
    """
    raster = read_preview(classes_tif, min_px)
    classes = classes if classes is not None else classes_from_tags(classes_tif) or []
    if title is None:
        title = classes_tif.parent.name
    rows, cols = raster.values.shape
    caption = f"{title}   {cols}x{rows} px preview (1:{raster.factor} of full resolution)"
    image = render_preview(raster, classes, aoi=aoi, title=caption)
    try:
        image.save(dst, format="PNG")
    except OSError as exc:
        raise OutputError(f"{dst}: cannot write the preview PNG ({exc})") from exc
    return dst
