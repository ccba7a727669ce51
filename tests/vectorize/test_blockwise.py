"""The block-wise run (geoseg.vectorize.blockwise), on Dask and in this process: exactly the
polygons of one pass, whatever the blocks.

The exhaustive sweep over block sizes runs the block tasks in this process (``workers=0``),
which is fast; the comparisons with GDAL's own CLI run on a real LocalCluster (2 workers).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import shapely

from geoseg.geo.grid import BlockGrid
from geoseg.vectorize import (
    BUILTIN_FIELDS,
    Connectivity,
    VectorizeOptions,
    polygonize_array,
    vectorize_raster,
)
from tests.support.gpkg import read_layer
from tests.support.polygons import assert_same_polygons, normalized
from tests.support.rasters import (
    ALL_RASTERS,
    CLASSES,
    CONNECTIVITIES,
    ND,
    PIXEL_AREA,
    TRANSFORM,
    write_tif,
)

# --------------------------------------------------------------------------- vs gdal_polygonize

DASK_CASES = [
    ("synthetic_landscape", 128),
    ("synthetic_landscape", 256),
    ("river", 100),
    ("river", 150),
    ("holes_across_seams", 37),
    ("holes_across_seams", 48),
    ("noise", 7),
    ("noise", 37),
    ("checkerboard", 5),
    ("block_checkerboard", 7),
    ("ring_with_island", 4),
    ("diagonal_touches", 2),
    ("diagonal_touches", 3),
    ("single_class", 7),
    ("all_nodata", 3),
]


@pytest.mark.parametrize("connectivity", CONNECTIVITIES, ids=["4", "8"])
@pytest.mark.parametrize(("name", "block_px"), DASK_CASES, ids=[f"{n}-{b}" for n, b in DASK_CASES])
def test_dask_gives_the_polygons_of_gdal_polygonize(
    *,
    name: str,
    block_px: int,
    connectivity: Connectivity,
    client,
    tifs,
    gdal_results,
    tmp_path: Path,
) -> None:
    tif, array = tifs[name]
    result = vectorize_raster(
        tif,
        tmp_path / "p.gpkg",
        classes=CLASSES,
        connectivity=connectivity,
        options=VectorizeOptions(block_size_px=block_px),
        client=client,
    )
    grid = BlockGrid(*array.shape, block_px)
    assert result.blocks == len(grid) > 1
    assert result.dask_workers == 2
    geoms, columns, info = read_layer(result.path)
    assert info["geometry_type"] == (
        "Polygon" if connectivity == Connectivity.FOUR else "MultiPolygon"
    )
    assert info["features"] == result.n_polygons
    assert shapely.is_valid(geoms).all()

    gdal_geoms, gdal_values = gdal_results.get(name, array, connectivity)
    i, j = assert_same_polygons(geoms, gdal_geoms)
    assert np.array_equal(columns["class_id"][i], gdal_values[j])
    np.testing.assert_allclose(columns["area_m2"], columns["pixel_count"] * PIXEL_AREA, rtol=1e-12)
    np.testing.assert_allclose(columns["perimeter_m"], shapely.length(geoms), rtol=1e-12)
    if connectivity == Connectivity.FOUR:  # the very same rings: no vertex left where seams were
        assert normalized(geoms) == normalized(gdal_geoms)


@pytest.mark.parametrize("connectivity", CONNECTIVITIES, ids=["4", "8"])
@pytest.mark.parametrize("name", list(ALL_RASTERS))
def test_every_block_size_gives_the_single_pass_polygons(
    name: str, connectivity: Connectivity, tifs, tmp_path: Path
) -> None:
    """The block tasks in this process (workers=0): block sizes down to one pixel."""
    tif, array = tifs[name]
    single = polygonize_array(array, TRANSFORM, connectivity=connectivity)
    for block_px in (1, 2, 3, 5, 16, 37, 100):
        if len(BlockGrid(*array.shape, block_px)) > 150:
            continue
        result = vectorize_raster(
            tif,
            tmp_path / f"p{block_px}.gpkg",
            classes=CLASSES,
            connectivity=connectivity,
            options=VectorizeOptions(block_size_px=block_px, workers=0),
        )
        geoms, columns, _ = read_layer(result.path)
        i, j = assert_same_polygons(geoms, single.geometry)
        assert np.array_equal(columns["class_id"][i], single.class_id[j])
        assert np.array_equal(columns["pixel_count"][i], single.pixel_count[j])
        if connectivity == Connectivity.FOUR:
            assert normalized(geoms) == normalized(single.geometry), block_px


# --------------------------------------------------------------------------- attributes


@pytest.mark.parametrize("connectivity", CONNECTIVITIES, ids=["4", "8"])
def test_mean_confidence_and_counts_equal_single_pass(
    connectivity: Connectivity, client, tifs, tmp_path: Path
) -> None:
    tif, array = tifs["synthetic_landscape"]
    rng = np.random.default_rng(4)
    confidence = rng.integers(20, 101, array.shape).astype(np.uint8)
    confidence[array == ND] = 255
    confidence[rng.random(array.shape) < 0.05] = 255  # unknown pixels inside regions too
    conf_tif = write_tif(tmp_path / "confidence.tif", confidence, nodata=255)
    result = vectorize_raster(
        tif,
        tmp_path / "p.gpkg",
        classes=CLASSES,
        confidence_path=conf_tif,
        connectivity=connectivity,
        extra_attributes={"scene": "S1", "model_sha256": "ab" * 32},
        options=VectorizeOptions(block_size_px=64),
        client=client,
    )
    geoms, columns, info = read_layer(result.path)
    assert list(info["fields"]) == [*BUILTIN_FIELDS, "scene", "model_sha256"]
    single = polygonize_array(
        array,
        TRANSFORM,
        connectivity=connectivity,
        confidence=np.where(confidence == 255, np.nan, confidence),
    )
    i, j = assert_same_polygons(geoms, single.geometry)
    assert np.array_equal(columns["pixel_count"][i], single.pixel_count[j])
    # Sums of integers: the same float result whatever the blocks.
    assert np.array_equal(columns["mean_confidence"][i], single.mean_confidence[j])
    assert set(columns["scene"]) == {"S1"}
    for cid in np.unique(array[array != ND]):
        assert result.polygons_per_class[int(cid)] == np.count_nonzero(single.class_id == cid)
        assert result.area_m2_per_class[int(cid)] == pytest.approx(
            np.count_nonzero(array == cid) * PIXEL_AREA, rel=1e-12
        )


# --------------------------------------------------------------------------- simplify


@pytest.mark.parametrize("connectivity", CONNECTIVITIES, ids=["4", "8"])
@pytest.mark.parametrize("name", ["synthetic_landscape", "river"])
def test_simplify_keeps_a_valid_coverage_across_seams(
    name: str, connectivity: Connectivity, client, tifs, tmp_path: Path
) -> None:
    tif, array = tifs[name]
    plain = vectorize_raster(
        tif,
        tmp_path / "plain.gpkg",
        classes=CLASSES,
        connectivity=connectivity,
        options=VectorizeOptions(block_size_px=64, workers=0),
    )
    result = vectorize_raster(
        tif,
        tmp_path / "simple.gpkg",
        classes=CLASSES,
        connectivity=connectivity,
        options=VectorizeOptions(block_size_px=64, simplify_m=25.0),
        client=client,
    )
    geoms, columns, _ = read_layer(result.path)
    plain_geoms, _, _ = read_layer(plain.path)
    assert result.n_polygons == plain.n_polygons  # no region vanishes
    assert shapely.is_valid(geoms).all()
    assert shapely.coverage_is_valid(geoms)  # no overlaps, shared edges shared
    assert shapely.get_num_coordinates(geoms).sum() < shapely.get_num_coordinates(plain_geoms).sum()
    if not (array == ND).any():  # no gaps: the polygons tile the raster exactly
        raster_area = array.size * PIXEL_AREA
        assert shapely.area(geoms).sum() == pytest.approx(raster_area, rel=1e-9)
        assert shapely.union_all(geoms).area == pytest.approx(raster_area, rel=1e-9)
    else:
        valid_area = np.count_nonzero(array != ND) * PIXEL_AREA
        assert shapely.area(geoms).sum() == pytest.approx(valid_area, rel=0.01)
    np.testing.assert_allclose(columns["area_m2"], shapely.area(geoms), rtol=1e-9)
