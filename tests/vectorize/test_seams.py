"""Seams between blocks (geoseg.vectorize.seams, merge, crackunion): pieces of one region found
across seams, batched without splitting a region, and unioned into the single-pass rings."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import shapely
from affine import Affine
from hypothesis import given, settings
from hypothesis import strategies as st

from geoseg.geo.grid import BlockGrid
from geoseg.vectorize import (
    Connectivity,
    VectorizeOptions,
    blockwise,
    label_components,
    polygonize_array,
    vectorize_raster,
)
from geoseg.vectorize.blocks import block_edges, edge_strips
from geoseg.vectorize.crackunion import union_crack_pieces
from geoseg.vectorize.polygonize import label_regions
from geoseg.vectorize.seams import cross_pairs, merge_batches
from geoseg.vectorize.trace import trace_polygons
from tests.support.gpkg import read_layer
from tests.support.polygons import normalized
from tests.support.rasters import CLASSES, ND, PIXEL_AREA, TRANSFORM

# --------------------------------------------------------------------------- block-wise runs


def test_river_spanning_every_block_comes_out_whole(client, tifs, tmp_path: Path) -> None:
    tif, array = tifs["river"]
    result = vectorize_raster(
        tif,
        tmp_path / "p.gpkg",
        classes=CLASSES,
        options=VectorizeOptions(block_size_px=40),
        client=client,
    )
    geoms, columns, _ = read_layer(result.path)
    water = geoms[columns["class_id"] == 0]
    assert len(water) == 1  # one river, tributary included, across 8 x 11 blocks
    (river_polygon,) = water
    grid = BlockGrid(*array.shape, 40)
    assert river_polygon.bounds[0] == TRANSFORM.c
    assert river_polygon.bounds[2] == TRANSFORM.c + array.shape[1] * TRANSFORM.a
    assert len(river_polygon.interiors) > 3  # the islands
    single = polygonize_array(array, TRANSFORM)
    assert normalized(water) == normalized(single.geometry[single.class_id == 0])
    assert river_polygon.area == np.count_nonzero(array == 0) * PIXEL_AREA
    assert len(grid) == 88


def test_only_seam_pieces_are_merged(tifs, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Regions inside a block pass straight to the writer; merge tasks see only seam pieces."""
    tif, _ = tifs["synthetic_landscape"]
    merged_inputs: list[int] = []
    polygonized: list[tuple[int, int]] = []
    real_merge = blockwise.merge_pieces
    real_block = blockwise.polygonize_block

    def spy_merge(job, nodes, group_of, n_groups, *selections):
        merged_inputs.append(sum(len(s) for s in selections))
        return real_merge(job, nodes, group_of, n_groups, *selections)

    def spy_block(job, block, sieve):
        out = real_block(job, block, sieve)
        polygonized.append((len(out.features), len(out.seams)))
        return out

    monkeypatch.setattr(blockwise, "merge_pieces", spy_merge)
    monkeypatch.setattr(blockwise, "polygonize_block", spy_block)
    result = vectorize_raster(
        tif,
        tmp_path / "p.gpkg",
        classes=CLASSES,
        options=VectorizeOptions(block_size_px=200, workers=0),
    )
    interior = sum(n for n, _ in polygonized)
    seam_pieces = sum(n for _, n in polygonized)
    assert len(polygonized) == 9
    assert sum(merged_inputs) == seam_pieces  # every seam piece once, nothing else
    assert interior > 0 and seam_pieces > 0
    assert interior < result.n_polygons < interior + seam_pieces  # pieces were joined


# --------------------------------------------------------------------------- units


def _random_classes(seed: int, shape: tuple[int, int]) -> np.ndarray:
    rng = np.random.default_rng(seed)
    array = rng.integers(0, int(rng.integers(1, 4)), shape).astype(np.uint8)
    array[rng.random(shape) < 0.1] = ND
    return array


def _brute_force_times(array: np.ndarray, block: int, eight: bool) -> list[int]:
    """GDAL sieve time of every adjacent valid pixel pair in different blocks."""
    height, width = array.shape
    offsets = [(-1, 0, 0), (0, -1, 3)] + ([(-1, -1, 1), (-1, 1, 2)] if eight else [])
    times = []
    for row in range(height):
        for col in range(width):
            for dr, dc, k in offsets:
                r, c = row + dr, col + dc
                if not (0 <= r < height and 0 <= c < width):
                    continue
                if array[row, col] == ND or array[r, c] == ND:
                    continue
                if (row // block, col // block) != (r // block, c // block):
                    times.append((row * width + col) * 4 + k)
    return sorted(times)


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    shape=st.tuples(st.integers(1, 16), st.integers(1, 16)),
    block=st.integers(1, 6),
    eight=st.booleans(),
)
def test_cross_pairs_are_the_pixel_pairs_across_seams(
    seed: int, shape: tuple[int, int], block: int, eight: bool
) -> None:
    """From edge labels alone: every pair of touching valid pixels across a seam, once, with
    both pixels' classes and the time GDAL's sieve compares them."""
    array = _random_classes(seed, shape)
    grid = BlockGrid(*shape, block)
    edges = []
    for b in grid.blocks():
        classes = array[b.row_off : b.row_off + b.height, b.col_off : b.col_off + b.width]
        labels, _ = label_regions(classes, nodata=ND)
        edges.append(block_edges(edge_strips(labels), classes))
    connectivity = Connectivity.EIGHT if eight else Connectivity.FOUR
    pairs = cross_pairs(grid, edges, connectivity)
    assert sorted(pairs.time.tolist()) == _brute_force_times(array, block, eight)
    later, k = np.divmod(pairs.time, 4)
    row, col = np.divmod(later, shape[1])
    d_row = np.array([-1, -1, -1, 0])[k]
    d_col = np.array([0, -1, 1, -1])[k]
    later_class, earlier_class = array[row, col], array[row + d_row, col + d_col]
    a_is_later = pairs.block_a == [
        grid.block(r // block, c // block).index for r, c in zip(row, col, strict=True)
    ]
    assert np.array_equal(np.where(a_is_later, pairs.class_a, pairs.class_b), later_class)
    assert np.array_equal(np.where(a_is_later, pairs.class_b, pairs.class_a), earlier_class)


@settings(max_examples=60, deadline=None)
@given(
    groups=st.lists(st.integers(0, 9), min_size=0, max_size=40),
    max_pieces=st.integers(1, 12),
)
def test_merge_batches_keep_each_region_in_one_task(groups: list[int], max_pieces: int) -> None:
    _, group_of = np.unique(np.asarray(groups, dtype=np.int64), return_inverse=True)
    batches = merge_batches(group_of.astype(np.int64), max_pieces)
    if not groups:
        assert batches == []
        return
    flat = np.concatenate(batches)
    assert sorted(flat.tolist()) == list(range(len(groups)))  # every piece once
    assert np.array_equal(group_of[flat], np.sort(group_of))  # in group order
    task_of = np.repeat(np.arange(len(batches)), [len(b) for b in batches])
    for g in np.unique(group_of):
        assert len(np.unique(task_of[group_of[flat] == g])) == 1  # never split
    for batch in batches:  # a task goes past max_pieces only to finish its last region
        assert len(np.unique(group_of[batch][max_pieces:])) <= 1


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    shape=st.tuples(st.integers(1, 18), st.integers(1, 18)),
    block=st.integers(1, 7),
)
def test_crack_union_gives_the_single_pass_rings(
    seed: int, shape: tuple[int, int], block: int
) -> None:
    """Every region's pieces, traced block by block, unioned on the crack lattice: the rings
    of tracing the whole raster, vertex for vertex (4-connectivity)."""
    array = _random_classes(seed, shape)
    whole = polygonize_array(array, Affine.identity())
    labels, _ = label_components(array)
    pieces = []
    for b in BlockGrid(*shape, block).blocks():
        classes = array[b.row_off : b.row_off + b.height, b.col_off : b.col_off + b.width]
        traced, _ = trace_polygons(classes, ND, Affine.translation(b.col_off, b.row_off))
        pieces.extend(traced)
    if not pieces:
        return
    pieces = np.asarray(pieces, dtype=object)
    inside = shapely.get_coordinates(shapely.point_on_surface(pieces))
    region = labels[np.floor(inside[:, 1]).astype(int), np.floor(inside[:, 0]).astype(int)]
    ids, group = np.unique(region, return_inverse=True)
    merged = union_crack_pieces(
        pieces, group, len(ids), block_px=block, width=shape[1], height=shape[0]
    )
    assert normalized(merged) == normalized(whole.geometry[ids - 1])
    assert shapely.is_valid(merged).all()
