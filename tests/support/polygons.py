"""Polygons to compare with: GDAL's ``gdal_polygonize.py`` run on a raster, and the checks
that two polygon sets are the same (region for region, or vertex for vertex)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import shapely
from pyogrio.raw import read as ogr_read

from geoseg.vectorize import Connectivity
from tests.support.rasters import PIXEL_AREA, write_tif


def gdal_polygonize_file(
    exe: str, tif: Path, folder: Path, connectivity: Connectivity = Connectivity.FOUR
) -> tuple[np.ndarray, np.ndarray]:
    """Polygonize ``tif`` with the GDAL CLI; return (geometries, class values)."""
    out = folder / "gdal_out.gpkg"
    eight = ["-8"] if connectivity == Connectivity.EIGHT else []
    subprocess.run(
        [exe, "-q", *eight, str(tif), "-f", "GPKG", str(out), "out", "DN"],
        check=True,
        capture_output=True,
    )
    _, _, wkb, fields = ogr_read(out, layer="out")
    return shapely.from_wkb(wkb), np.asarray(fields[0])


def run_gdal_polygonize(
    exe: str, array: np.ndarray, folder: Path, connectivity: Connectivity
) -> tuple[np.ndarray, np.ndarray]:
    """Polygonize ``array`` (written as a GeoTIFF) with the GDAL CLI: (geometries, values)."""
    tif = write_tif(folder / "gdal_in.tif", array)
    return gdal_polygonize_file(exe, tif, folder, connectivity)


def match(ours: np.ndarray, theirs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pairs (our index, their index): each of ours inside exactly one distinct of theirs."""
    tree = shapely.STRtree(theirs)
    i, j = tree.query(shapely.point_on_surface(ours), predicate="within")
    assert np.array_equal(np.sort(i), np.arange(len(ours)))  # every polygon matched
    assert len(set(j.tolist())) == len(ours)  # ... to a distinct one of theirs
    return i, j


def assert_same_polygons(ours: np.ndarray, theirs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Both cover the same regions (to 1e-9 of a pixel); returns the matching `match` pairs."""
    assert len(ours) == len(theirs)
    if not len(ours):
        return np.empty(0, int), np.empty(0, int)
    i, j = match(ours, theirs)
    sym_diff = shapely.area(shapely.symmetric_difference(ours[i], theirs[j]))
    assert sym_diff.max() <= 1e-9 * PIXEL_AREA
    return i, j


def normalized(geoms: np.ndarray) -> list[bytes]:
    """Sorted normalized WKB: equal lists mean the same rings, vertex for vertex."""
    return sorted(shapely.to_wkb(shapely.normalize(geoms)))
