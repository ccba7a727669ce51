"""Raster I/O: scene facts, windowed reads with nodata masks, row-band writers and COGs.

Nothing here holds a scene-sized array: reads are windowed, outputs are written row band by row
band into a tiled GeoTIFF, and the final Cloud-Optimized GeoTIFF (with overviews) is made from
that file by GDAL's COG driver, which works block by block.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Self
from xml.sax.saxutils import escape

import numpy as np
import rasterio
import rasterio.shutil
from affine import Affine
from rasterio._err import CPLE_BaseError
from rasterio.crs import CRS
from rasterio.enums import Interleaving
from rasterio.errors import RasterioIOError

from geoseg.classes import CLASS_NODATA, ClassInfo, colormap
from geoseg.errors import OutputError, SceneError
from geoseg.grid import PixelWindow

_EARTH_RADIUS_M = 6_371_008.8


@dataclass(frozen=True)
class SceneInfo:
    """What geoseg needs to know about a scene, read once from its header."""

    path: Path
    crs: CRS
    transform: Affine
    height: int
    width: int
    band_count: int
    dtypes: tuple[str, ...]
    nodata: float | None

    @property
    def name(self) -> str:
        """Output folder name for this scene: the file name without its suffix."""
        return self.path.stem

    @property
    def shape(self) -> tuple[int, int]:
        return (self.height, self.width)

    @property
    def res(self) -> tuple[float, float]:
        """Pixel size (x, y) in CRS units, positive."""
        return (abs(self.transform.a), abs(self.transform.e))

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        """(left, bottom, right, top) in CRS units."""
        return self.window_bounds(PixelWindow(0, 0, self.height, self.width))

    def window_bounds(self, window: PixelWindow) -> tuple[float, float, float, float]:
        """(left, bottom, right, top) of a pixel window of this scene, in CRS units."""
        transform = self.window_transform(window)
        x0, y0 = transform @ (0, 0)
        x1, y1 = transform @ (window.width, window.height)
        return (min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1))

    @property
    def gsd_m(self) -> float:
        """Ground sample distance in metres (mean of x/y; approximated for geographic CRSs)."""
        return pixel_size_m(self.crs, self.transform, self.bounds)

    def window_transform(self, window: PixelWindow) -> Affine:
        """Affine transform of a pixel window of this scene (same grid, shifted origin)."""
        return self.transform @ Affine.translation(window.col_off, window.row_off)


def pixel_size_m(crs: CRS, transform: Affine, bounds: tuple[float, float, float, float]) -> float:
    """Mean pixel size in metres: CRS linear units, or degrees scaled at the mid-latitude."""
    rx, ry = abs(transform.a), abs(transform.e)
    if crs.is_geographic:
        lat = math.radians((bounds[1] + bounds[3]) / 2)
        metres_per_deg = math.pi * _EARTH_RADIUS_M / 180
        return (rx * metres_per_deg * math.cos(lat) + ry * metres_per_deg) / 2
    return (rx + ry) / 2 * crs.linear_units_factor[1]


def open_scene(path: Path | str) -> SceneInfo:
    """Read a scene's header; refuse files GDAL cannot open or that have no CRS."""
    path = Path(path)
    try:
        with rasterio.open(path) as ds:
            check_complete(ds, path)
            info = SceneInfo(
                path=path,
                crs=ds.crs,
                transform=ds.transform,
                height=ds.height,
                width=ds.width,
                band_count=ds.count,
                dtypes=tuple(ds.dtypes),
                nodata=ds.nodata,
            )
    except (RasterioIOError, CPLE_BaseError) as exc:
        reason = str(exc).split(":")[-1].strip() or "not a raster GDAL can read"
        raise SceneError(
            f"{path}: cannot read the scene ({reason}); pass GeoTIFF/COG/VRT files with --scenes"
        ) from None
    if info.crs is None:
        raise SceneError(
            f"{path}: the scene has no CRS; georeference it first (e.g. gdal_edit.py -a_srs)"
        )
    if info.transform.b != 0 or info.transform.d != 0:
        t = info.transform
        raise SceneError(
            f"{path}: the scene grid is rotated or sheared (geotransform terms {t.b:g}, {t.d:g} "
            "are not 0); geoseg needs north-up pixels: warp it first, e.g. "
            "gdalwarp in.tif north_up.tif"
        )
    return info


def check_complete(ds: rasterio.DatasetReader, path: Path) -> None:
    """Refuse a GeoTIFF whose pixel blocks lie past the end of the file (a truncated copy).

    GDAL opens such a file happily (its header is at the start) and fails only when the missing
    blocks are read, mid-run. The block offsets and sizes are in the header, so checking them
    costs no pixel reads. Other formats are checked when read (`read_window`).
    """
    if ds.driver != "GTiff" or not path.is_file():
        return
    size = path.stat().st_size
    block_h, block_w = ds.block_shapes[0]
    rows, cols = math.ceil(ds.height / block_h), math.ceil(ds.width / block_w)
    bands = [1] if ds.interleaving == Interleaving.pixel else list(ds.indexes)
    needed = 0
    for band in bands:
        for r in range(rows):
            for c in range(cols):
                offset = ds.get_tag_item(f"BLOCK_OFFSET_{c}_{r}", "TIFF", bidx=band)
                length = ds.get_tag_item(f"BLOCK_SIZE_{c}_{r}", "TIFF", bidx=band)
                if offset and length:
                    needed = max(needed, int(offset) + int(length))
    if needed > size:
        raise SceneError(
            f"{path}: the file is truncated or corrupt ({size} bytes, but its pixel blocks "
            f"reach byte {needed}); copy or download it again"
        )


def read_window(
    ds: rasterio.DatasetReader, window: PixelWindow, indexes: Sequence[int]
) -> tuple[np.ndarray, np.ndarray]:
    """Bands ``indexes`` over ``window`` and a valid mask (True where every band has data)."""
    rio_window = window.to_rasterio()
    try:
        data = ds.read(list(indexes), window=rio_window)
        masks = ds.read_masks(list(indexes), window=rio_window)
    except (RasterioIOError, CPLE_BaseError) as exc:
        raise SceneError(
            f"{ds.name}: cannot read pixels rows {window.row_off}:{window.row_end}, cols "
            f"{window.col_off}:{window.col_end} ({str(exc).splitlines()[0]}); the file is "
            "corrupt or truncated: copy or download it again"
        ) from None
    return data, np.all(masks > 0, axis=0)


@dataclass(frozen=True)
class OutputGrid:
    """Georeferencing of an output raster: the AOI window on the scene grid."""

    crs: CRS
    transform: Affine
    height: int
    width: int


class RowBandWriter:
    """A single-band uint8 tiled GeoTIFF written in whole-row bands (memory: one band)."""

    def __init__(
        self,
        path: Path,
        grid: OutputGrid,
        *,
        nodata: int | None,
        classes: Sequence[ClassInfo] | None = None,
        tags: dict[str, str] | None = None,
    ):
        self.path = path
        self._grid = grid
        self._nodata = nodata
        self._classes = classes
        self._tags = tags or {}
        self._ds: rasterio.io.DatasetWriter | None = None
        self.rows_written = 0

    def __enter__(self) -> Self:
        try:
            self._ds = rasterio.open(
                self.path,
                "w",
                driver="GTiff",
                width=self._grid.width,
                height=self._grid.height,
                count=1,
                dtype="uint8",
                crs=self._grid.crs,
                transform=self._grid.transform,
                nodata=self._nodata,
                tiled=True,
                blockxsize=256,
                blockysize=256,
                compress="deflate",
                predictor=2,
                BIGTIFF="IF_SAFER",
                # GDAL compresses the row band's blocks on all cores: on a GPU host a single
                # deflate thread was the slowest stage of prediction
                NUM_THREADS="ALL_CPUS",
            )
        except RasterioIOError as exc:
            raise OutputError(f"{self.path}: cannot create the file ({exc})") from None
        if self._classes is not None:
            self._ds.write_colormap(1, colormap(self._classes))
        self._ds.update_tags(**self._tags)
        return self

    def write_rows(self, row_off: int, rows: np.ndarray) -> None:
        """Write ``rows`` (n, width) uint8 starting at output row ``row_off``."""
        if self._ds is None:
            raise RuntimeError("RowBandWriter.write_rows called outside its `with` block")
        window = rasterio.windows.Window(0, row_off, rows.shape[1], rows.shape[0])
        self._ds.write(rows, 1, window=window)
        self.rows_written += rows.shape[0]

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._ds is not None:
            self._ds.close()
            self._ds = None


def overview_count(height: int, width: int, smallest_px: int = 256) -> int:
    """Halvings until the larger side fits ``smallest_px``; at least one so every COG has one."""
    return max(1, math.ceil(math.log2(max(height, width) / smallest_px)))


def write_cog(src: Path, dst: Path, *, resampling: str) -> None:
    """Convert a tiled GeoTIFF to a COG with internal overviews (GDAL works block-wise)."""
    try:
        with rasterio.open(src) as ds:
            levels = overview_count(ds.height, ds.width)
        rasterio.shutil.copy(
            src,
            dst,
            driver="COG",
            BLOCKSIZE=512,
            COMPRESS="DEFLATE",
            PREDICTOR="YES",
            OVERVIEWS="IGNORE_EXISTING",
            OVERVIEW_COUNT=levels,
            OVERVIEW_RESAMPLING=resampling.upper(),
            BIGTIFF="IF_SAFER",
            NUM_THREADS="ALL_CPUS",
        )
    except RasterioIOError as exc:
        raise OutputError(f"{dst}: cannot write the COG ({exc})") from None


def write_category_names(tif: Path, classes: Sequence[ClassInfo]) -> Path:
    """Class names as GDAL category names in a PAM sidecar (``<tif>.aux.xml``).

    GeoTIFF has no slot for category names; GDAL and QGIS read them from this sidecar, which
    travels with the file like a .prj would.
    """
    names = {c.id: c.name for c in classes}
    entries = "".join(
        f"<Category>{escape(names.get(i, ''))}</Category>" for i in range(max(names) + 1)
    )
    xml = (
        '<PAMDataset>\n  <PAMRasterBand band="1">\n'
        f"    <CategoryNames>{entries}</CategoryNames>\n"
        "  </PAMRasterBand>\n</PAMDataset>\n"
    )
    sidecar = tif.with_name(tif.name + ".aux.xml")
    sidecar.write_text(xml, encoding="utf-8")
    return sidecar


def classes_tags(classes: Sequence[ClassInfo]) -> dict[str, str]:
    """GeoTIFF metadata tags that let `geoseg vectorize` recover class names and colours."""
    return {
        "GEOSEG_CLASSES": json.dumps(
            [{"id": c.id, "name": c.name, "color": c.color} for c in classes]
        )
    }


def classes_from_tags(path: Path) -> list[ClassInfo] | None:
    """Classes stored by `classes_tags` in a class raster, or None if it has none."""
    with rasterio.open(path) as ds:
        raw = ds.tags().get("GEOSEG_CLASSES")
    if raw is None:
        return None
    return [ClassInfo(int(c["id"]), str(c["name"]), str(c["color"])) for c in json.loads(raw)]


def write_mosaic_vrt(sources: Sequence[Path], dst: Path, classes: Sequence[ClassInfo]) -> Path:
    """A VRT mosaic of single-band class rasters that share one CRS and pixel size.

    Written by hand (no gdalbuildvrt needed). Source paths are stored relative to the VRT. It
    carries the classes like a class raster does, inline: the colour table (entries up to the
    largest class id only: unlike a GeoTIFF's, a VRT palette may be short, and QGIS lists
    every entry in its legend; nodata needs no entry), the class names as GDAL category names
    (QGIS labels the palette with them) and the GEOSEG_CLASSES tag.
    """
    infos = [open_scene(p) for p in sources]
    crs, (rx, ry) = infos[0].crs, infos[0].res
    for info in infos[1:]:
        if info.crs != crs or not np.allclose(info.res, (rx, ry)):
            raise OutputError(f"{info.path}: CRS or pixel size differs; cannot join the mosaic")
    left = min(i.bounds[0] for i in infos)
    top = max(i.bounds[3] for i in infos)
    right = max(i.bounds[2] for i in infos)
    bottom = min(i.bounds[1] for i in infos)
    width, height = round((right - left) / rx), round((top - bottom) / ry)
    colours = colormap(classes)
    names = {c.id: c.name for c in classes}
    values = range(max(names) + 1)
    entries = "".join(
        '<Entry c1="{}" c2="{}" c3="{}" c4="{}"/>'.format(*colours.get(i, (0, 0, 0, 0)))
        for i in values
    )
    categories = "".join(f"<Category>{escape(names.get(i, ''))}</Category>" for i in values)
    tags = "".join(
        f'<MDI key="{escape(k)}">{escape(v)}</MDI>' for k, v in classes_tags(classes).items()
    )
    simple = []
    for info in infos:
        x_off = round((info.bounds[0] - left) / rx)
        y_off = round((top - info.bounds[3]) / ry)
        rel = os.path.relpath(info.path.resolve(), dst.parent.resolve())
        simple.append(
            f'    <ComplexSource><SourceFilename relativeToVRT="1">{escape(str(rel))}'
            "</SourceFilename><SourceBand>1</SourceBand>"
            f'<SrcRect xOff="0" yOff="0" xSize="{info.width}" ySize="{info.height}"/>'
            f'<DstRect xOff="{x_off}" yOff="{y_off}" xSize="{info.width}" ySize="{info.height}"/>'
            f"<NODATA>{CLASS_NODATA}</NODATA></ComplexSource>\n"
        )
    xml = (
        f'<VRTDataset rasterXSize="{width}" rasterYSize="{height}">\n'
        f"  <SRS>{escape(crs.to_wkt())}</SRS>\n"
        f"  <GeoTransform>{left}, {rx}, 0, {top}, 0, {-ry}</GeoTransform>\n"
        f"  <Metadata>{tags}</Metadata>\n"
        '  <VRTRasterBand dataType="Byte" band="1">\n'
        f"    <NoDataValue>{CLASS_NODATA}</NoDataValue>\n"
        "    <ColorInterp>Palette</ColorInterp>\n"
        f"    <CategoryNames>{categories}</CategoryNames>\n"
        f"    <ColorTable>{entries}</ColorTable>\n"
        f"{''.join(simple)}"
        "  </VRTRasterBand>\n</VRTDataset>\n"
    )
    try:
        dst.write_text(xml, encoding="utf-8")
    except OSError as exc:
        raise OutputError(f"{dst}: cannot write the mosaic ({exc.strerror or exc})") from exc
    return dst
