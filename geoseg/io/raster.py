"""Raster I/O: scene facts, windowed reads with nodata masks, row-band writers and COGs.

Nothing here holds a scene-sized array: reads are windowed, outputs are written row band by row
band into a tiled GeoTIFF, and the final Cloud-Optimized GeoTIFF (with overviews) is made from
that file by GDAL's COG driver, which works block by block.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Self

import numpy as np
import rasterio
import rasterio.shutil
from rasterio._err import CPLE_BaseError
from rasterio.enums import Interleaving
from rasterio.errors import RasterioIOError

from geoseg.classes import ClassInfo, colormap
from geoseg.errors import OutputError, SceneError, option
from geoseg.geo.scene import SceneGrid
from geoseg.geo.window import PixelWindow


@dataclass(frozen=True)
class SceneInfo:
    """What geoseg needs to know about a scene file, read once from its header."""

    path: Path
    grid: SceneGrid
    band_count: int
    dtypes: tuple[str, ...]
    nodata: float | None
    label: str = ""
    """How messages name the scene (an item id, a redacted URL); empty: its path."""

    @property
    def name(self) -> str:
        """Output folder name for this scene: the file name without its suffix."""
        return self.path.stem

    @property
    def display(self) -> str:
        return self.label or str(self.path)


def open_scene(path: Path | str) -> SceneInfo:
    """Read a scene's header; refuse files GDAL cannot open or that have no CRS."""
    path = Path(path)
    try:
        with rasterio.open(path) as ds:
            check_complete(ds, path)
            info = SceneInfo(
                path=path,
                grid=SceneGrid(ds.crs, ds.transform, ds.height, ds.width),
                band_count=ds.count,
                dtypes=tuple(ds.dtypes),
                nodata=ds.nodata,
            )
    except (RasterioIOError, CPLE_BaseError) as exc:
        reason = str(exc).split(":")[-1].strip() or "not a raster GDAL can read"
        raise SceneError(
            f"{path}: cannot read the scene ({reason}); pass GeoTIFF/COG/VRT files with "
            f"{option('scenes')}"
        ) from None
    if info.grid.crs is None:
        raise SceneError(
            f"{path}: the scene has no CRS; georeference it first (e.g. gdal_edit.py -a_srs)"
        )
    if info.grid.transform.b != 0 or info.grid.transform.d != 0:
        t = info.grid.transform
        raise SceneError(
            f"{path}: the scene grid is rotated or sheared (geotransform terms {t.b:g}, {t.d:g} "
            "are not 0); geoseg needs north-up pixels: warp it first, e.g. "
            "gdalwarp in.tif north_up.tif"
        )
    return info


def unreadable_raster(path: Path | str, exc: Exception) -> SceneError:
    """The one-line error for a raster GDAL cannot open or read."""
    return SceneError(
        f"{path}: cannot be read as a raster ({exc}); check the path and that the file is a "
        "complete GeoTIFF"
    )


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


class RowBandWriter:
    """A single-band tiled GeoTIFF (uint8 unless ``dtype`` says) written in whole-row bands
    (memory: one band): the intermediate rasters that COGs and polygons are made from."""

    def __init__(
        self,
        path: Path,
        grid: SceneGrid,
        *,
        nodata: int | None,
        classes: Sequence[ClassInfo] | None = None,
        tags: dict[str, str] | None = None,
        dtype: str = "uint8",
    ):
        self.path = path
        self._dtype = dtype
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
                dtype=self._dtype,
                crs=self._grid.crs,
                transform=self._grid.transform,
                nodata=self._nodata,
                tiled=True,
                blockxsize=256,
                blockysize=256,
                # an intermediate file (the COGs and polygons are made from it, then it is
                # deleted): ZSTD level 1 costs a sixth of the CPU of deflate with a predictor
                # (0.06 vs 0.38 core-s for a 4096 px class + confidence pair) for files of
                # the same size, and reads faster; the CPU it frees goes to the model
                compress="zstd",
                zstd_level=1,
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
        """Write ``rows`` (n, width) of the file's dtype starting at output row ``row_off``."""
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
            if exc_type is None:
                self._check_complete()

    def _check_complete(self) -> None:
        """Reopen the closed file: GDAL flushes the last blocks and the directory on close and
        rasterio does not raise when that fails (a full disk), so a truncated file would
        otherwise pass for a written one."""
        try:
            with rasterio.open(self.path) as ds:
                ok = (ds.width, ds.height) == (self._grid.width, self._grid.height)
        except (RasterioIOError, CPLE_BaseError) as exc:
            raise OutputError(f"{self.path}: the file was not written completely ({exc})") from exc
        if not ok:
            raise OutputError(f"{self.path}: the file was not written completely")


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
