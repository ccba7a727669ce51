"""A VRT that stacks band files (local, /vsicurl/, /vsis3/) onto one grid, resampled on read.

geoseg reads every scene through GDAL's windowed reads; a per-band STAC item, a remote raster
or a scene at another pixel size becomes one small VRT file whose bands are the model's bands
in the model's order (plus a mask band last). GDAL resamples each source on read into the
requested window, so nothing is downloaded or resampled whole; ``SourceProperties`` let GDAL
open a remote band only when its pixels are first read.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from xml.sax.saxutils import escape

from geoseg.geo.scene import SceneGrid

GDAL_TYPES = {
    "uint8": "Byte",
    "int8": "Int8",
    "uint16": "UInt16",
    "int16": "Int16",
    "uint32": "UInt32",
    "int32": "Int32",
    "float32": "Float32",
    "float64": "Float64",
}


@dataclass(frozen=True)
class VrtBand:
    """One band of the VRT: band ``band`` of the file at ``path``, on its own grid."""

    path: str
    band: int
    grid: SceneGrid
    dtype: str
    nodata: float | None
    block: tuple[int, int]
    resampling: str
    description: str


def dst_rect(src: SceneGrid, target: SceneGrid) -> tuple[float, float, float, float]:
    """Where a source's full extent lies on the target grid: x/y offset and size, in target px.

    Both grids are north-up and in one CRS: x_off = (src.c - dst.c) / dst.a,
    x_size = src.width * src.a / dst.a (and the same with f, e and height for y).
    """
    s, t = src.transform, target.transform
    return (
        (s.c - t.c) / t.a,
        (s.f - t.f) / t.e,
        src.width * s.a / t.a,
        src.height * s.e / t.e,
    )


def _number(value: float) -> str:
    return repr(float(value))


def _band_xml(index: int, band: VrtBand, target: SceneGrid) -> str:
    x_off, y_off, x_size, y_size = dst_rect(band.grid, target)
    gdal_type = GDAL_TYPES[band.dtype]
    nodata = "" if band.nodata is None else f"<NoDataValue>{_number(band.nodata)}</NoDataValue>"
    source_nodata = "" if band.nodata is None else f"<NODATA>{_number(band.nodata)}</NODATA>"
    return (
        f'  <VRTRasterBand dataType="{gdal_type}" band="{index}">\n'
        f"    <Description>{escape(band.description)}</Description>\n"
        f"    {nodata}\n"
        f'    <ComplexSource resampling="{band.resampling}">\n'
        f'      <SourceFilename relativeToVRT="0">{escape(band.path)}</SourceFilename>\n'
        f"      <SourceBand>{band.band}</SourceBand>\n"
        f'      <SourceProperties RasterXSize="{band.grid.width}" '
        f'RasterYSize="{band.grid.height}" DataType="{gdal_type}" '
        f'BlockXSize="{band.block[1]}" BlockYSize="{band.block[0]}"/>\n'
        f'      <SrcRect xOff="0" yOff="0" xSize="{band.grid.width}" '
        f'ySize="{band.grid.height}"/>\n'
        f'      <DstRect xOff="{_number(x_off)}" yOff="{_number(y_off)}" '
        f'xSize="{_number(x_size)}" ySize="{_number(y_size)}"/>\n'
        f"      {source_nodata}\n"
        "    </ComplexSource>\n"
        "  </VRTRasterBand>\n"
    )


def vrt_xml(target: SceneGrid, bands: Sequence[VrtBand]) -> str:
    """The VRT document: ``bands`` in order on ``target``'s grid (CRS, transform, shape)."""
    t = target.transform
    geotransform = ", ".join(_number(v) for v in (t.c, t.a, t.b, t.f, t.d, t.e))
    body = "".join(_band_xml(i, b, target) for i, b in enumerate(bands, start=1))
    return (
        f'<VRTDataset rasterXSize="{target.width}" rasterYSize="{target.height}">\n'
        f'  <SRS dataAxisToSRSAxisMapping="1,2">{escape(target.crs.to_wkt())}</SRS>\n'
        f"  <GeoTransform>{geotransform}</GeoTransform>\n"
        f"{body}"
        "</VRTDataset>\n"
    )
