"""Fixtures of the vectorize tests: GDAL's polygonizer, the test rasters as files, a cluster."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import shapely

from geoseg.vectorize import Connectivity, dask_client
from tests.support.polygons import run_gdal_polygonize
from tests.support.rasters import ALL_RASTERS, write_tif


@pytest.fixture(scope="package")
def gdal_polygonize() -> str:
    """Path of ``gdal_polygonize.py`` (the test is skipped without it)."""
    exe = shutil.which("gdal_polygonize.py")
    if exe is None:
        pytest.skip("gdal_polygonize.py not on PATH (Debian: apt-get install gdal-bin)")
    return exe


class GdalReference:
    """gdal_polygonize.py output per (raster, connectivity), computed once.

    GDAL's 8-connected rings touch themselves at corners: they are repaired for comparison
    (the covered point set does not change).
    """

    def __init__(self, exe: str, tmp_path_factory: pytest.TempPathFactory) -> None:
        self._exe = exe
        self._tmp = tmp_path_factory
        self._cache: dict[tuple[str, int], tuple[np.ndarray, np.ndarray]] = {}

    def get(
        self, name: str, array: np.ndarray, connectivity: Connectivity
    ) -> tuple[np.ndarray, np.ndarray]:
        key = (name, int(connectivity))
        if key not in self._cache:
            folder = self._tmp.mktemp(f"gdal_{name}_{int(connectivity)}")
            geoms, values = run_gdal_polygonize(self._exe, array, folder, connectivity)
            geoms = shapely.make_valid(geoms, method="structure", keep_collapsed=False)
            self._cache[key] = (geoms, values)
        return self._cache[key]


@pytest.fixture(scope="package")
def gdal_results(gdal_polygonize: str, tmp_path_factory: pytest.TempPathFactory) -> GdalReference:
    return GdalReference(gdal_polygonize, tmp_path_factory)


@pytest.fixture(scope="package")
def tifs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, np.ndarray]]:
    """Every raster of `ALL_RASTERS` as a GeoTIFF, with its array."""
    folder = tmp_path_factory.mktemp("rasters")
    out = {}
    for name, make in ALL_RASTERS.items():
        array = make()
        out[name] = (write_tif(folder / f"{name}.tif", array), array)
    return out


@pytest.fixture(scope="package")
def client() -> Iterator[object]:
    """A real LocalCluster of 2 worker processes, shared by the vectorize tests."""
    with dask_client(workers=2) as started:
        started.wait_for_workers(2)
        yield started
