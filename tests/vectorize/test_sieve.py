"""The block-wise sieve (geoseg.vectorize.sieve): the pixels of GDAL's sieve on the whole raster,
whatever the blocks."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pytest
import rasterio.features
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from scipy import ndimage

from geoseg.geo.grid import BlockGrid
from geoseg.vectorize import Connectivity, VectorizeOptions, polygonize_array, vectorize_raster
from geoseg.vectorize.blocks import BlockJob, read_block
from geoseg.vectorize.executors import LocalExecutor
from geoseg.vectorize.sieve import plan_sieve, sieve_block
from tests.support.gpkg import read_layer
from tests.support.polygons import assert_same_polygons
from tests.support.rasters import (
    ALL_RASTERS,
    CLASSES,
    CONNECTIVITIES,
    ND,
    PIXEL_AREA,
    TRANSFORM,
    write_tif,
)


def sieve_blockwise(
    tif: Path, shape: tuple[int, int], threshold_px: int, connectivity: Connectivity, block: int
) -> np.ndarray:
    """The sieved raster as the blocks see it (all phases in this process)."""
    job = BlockJob(str(tif), None, *shape, TRANSFORM, "", connectivity, block, threshold_px)
    grid = BlockGrid(*shape, block)
    plans = plan_sieve(job, grid, LocalExecutor())
    out = np.empty(shape, dtype=np.uint8)
    for b, plan in zip(grid.blocks(), plans, strict=True):
        rows = slice(b.row_off, b.row_off + b.height)
        cols = slice(b.col_off, b.col_off + b.width)
        out[rows, cols] = sieve_block(job, b, read_block(job, b), plan)
    return out


def smooth_random(seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    field = ndimage.gaussian_filter(rng.standard_normal((90, 80)), 1.5)
    classes = np.digitize(field, np.quantile(field, [0.25, 0.5, 0.75])).astype(np.uint8)
    classes[rng.random(classes.shape) < 0.02] = ND
    return classes


@pytest.mark.parametrize("connectivity", CONNECTIVITIES, ids=["4", "8"])
@pytest.mark.parametrize("name", ["noise", "smooth", "landscape", "diagonal_touches"])
def test_blockwise_sieve_equals_sieving_the_whole_raster(
    name: str, connectivity: Connectivity, tmp_path: Path
) -> None:
    """Ties, chains of small regions, nodata: the same pixels as GDAL's sieve (rasterio)."""
    array = smooth_random(2) if name == "smooth" else ALL_RASTERS[name]()
    tif = write_tif(tmp_path / "c.tif", array)
    for threshold in (2, 5, 17):
        expected = rasterio.features.sieve(
            array, threshold, mask=array != ND, connectivity=int(connectivity)
        )
        for block in (3, 7, 37, 1000):
            if len(BlockGrid(*array.shape, block)) > 400:
                continue
            got = sieve_blockwise(tif, array.shape, threshold, connectivity, block)
            assert np.array_equal(got, expected), (threshold, block, (got != expected).sum())


@pytest.mark.parametrize("connectivity", CONNECTIVITIES, ids=["4", "8"])
def test_min_area_on_dask_equals_sieved_single_pass(
    connectivity: Connectivity, client, tifs, tmp_path: Path
) -> None:
    tif, array = tifs["synthetic_landscape"]
    result = vectorize_raster(
        tif,
        tmp_path / "p.gpkg",
        classes=CLASSES,
        connectivity=connectivity,
        options=VectorizeOptions(block_size_px=64, min_area_m2=24.5 * PIXEL_AREA),
        client=client,
    )
    sieved = rasterio.features.sieve(array, 25, mask=array != ND, connectivity=int(connectivity))
    assert (sieved != array).sum() > 100  # the sieve did something
    single = polygonize_array(sieved, TRANSFORM, connectivity=connectivity)
    geoms, columns, _ = read_layer(result.path)
    i, j = assert_same_polygons(geoms, single.geometry)
    assert np.array_equal(columns["pixel_count"][i], single.pixel_count[j])


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    shape=st.tuples(st.integers(1, 14), st.integers(1, 14)),
    block=st.integers(3, 9),
    threshold=st.integers(2, 9),
    eight=st.booleans(),
)
def test_blockwise_sieve_equals_gdal_on_random_rasters(
    seed: int, shape: tuple[int, int], block: int, threshold: int, eight: bool
) -> None:
    """Any raster, block size and threshold: the blocks leave GDAL's pixels (property test)."""
    assume(threshold < shape[0] * shape[1])  # rasterio's sieve refuses larger thresholds
    rng = np.random.default_rng(seed)
    array = rng.integers(0, int(rng.integers(1, 4)), shape).astype(np.uint8)
    array[rng.random(shape) < 0.1] = ND
    connectivity = Connectivity.EIGHT if eight else Connectivity.FOUR
    expected = rasterio.features.sieve(
        array, threshold, mask=array != ND, connectivity=int(connectivity)
    )
    with tempfile.TemporaryDirectory() as folder:
        tif = write_tif(Path(folder) / "c.tif", array)
        got = sieve_blockwise(tif, shape, threshold, connectivity, block)
    assert np.array_equal(got, expected)
