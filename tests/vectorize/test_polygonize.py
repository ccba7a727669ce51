"""Polygonize one array (geoseg.vectorize.polygonize), checked against GDAL's gdal_polygonize.py
and against scipy's labelling of the same regions."""

from __future__ import annotations

import numpy as np
import pytest
import shapely
from affine import Affine

from geoseg.errors import ConfigError
from geoseg.vectorize import Connectivity, label_components, polygonize_array, polygonize_labels
from geoseg.vectorize.blocks import edge_strips
from geoseg.vectorize.geometry import group_parts, repair_if_invalid
from geoseg.vectorize.polygonize import label_regions, run_edge_labels, run_sums, traced_regions
from geoseg.vectorize.trace import trace_regions
from tests.support.polygons import assert_same_polygons
from tests.support.rasters import (
    CONNECTIVITIES,
    ND,
    PIXEL_AREA,
    RASTERS,
    TRANSFORM,
    checkerboard,
    noise,
    pixel_centres,
    ring_with_island,
)

# --------------------------------------------------------------------------- vs gdal_polygonize


@pytest.mark.parametrize("connectivity", CONNECTIVITIES, ids=["4", "8"])
@pytest.mark.parametrize("name", list(RASTERS))
def test_same_polygons_as_gdal_polygonize(
    name: str, connectivity: Connectivity, gdal_results
) -> None:
    array = RASTERS[name]()
    table = polygonize_array(array, TRANSFORM, connectivity=connectivity)
    # GDAL's 8-connected rings touch themselves at pixel corners (OGC-invalid); they are
    # repaired the same way for the comparison. The covered point set does not change.
    gdal_geoms, gdal_values = gdal_results.get(name, array, connectivity)
    ours, theirs = assert_same_polygons(table.geometry, gdal_geoms)
    assert np.array_equal(gdal_values[theirs], table.class_id[ours])


# --------------------------------------------------------------------------- invariants


@pytest.mark.parametrize("connectivity", CONNECTIVITIES, ids=["4", "8"])
@pytest.mark.parametrize("name", list(RASTERS))
def test_polygon_invariants(name: str, connectivity: Connectivity) -> None:
    array = RASTERS[name]()
    table = polygonize_array(array, TRANSFORM, connectivity=connectivity)
    _, component_class = label_components(array, connectivity=connectivity)
    assert len(table) == len(component_class)

    assert shapely.is_valid(table.geometry).all()
    types = set(shapely.get_type_id(table.geometry).tolist())
    if connectivity == Connectivity.FOUR:
        assert types <= {shapely.GeometryType.POLYGON}
    else:
        assert types <= {shapely.GeometryType.POLYGON, shapely.GeometryType.MULTIPOLYGON}

    areas = shapely.area(table.geometry)
    np.testing.assert_allclose(areas, table.pixel_count * PIXEL_AREA, rtol=1e-12)
    for value in np.unique(array[array != ND]):
        in_class = table.class_id == value
        np.testing.assert_allclose(
            areas[in_class].sum(), np.count_nonzero(array == value) * PIXEL_AREA, rtol=1e-12
        )
        assert table.pixel_count[in_class].sum() == np.count_nonzero(array == value)
    assert ND not in table.class_id

    # Nodata is never vectorized: no polygon covers a nodata pixel centre.
    xs, ys = pixel_centres(array.shape, TRANSFORM)
    nodata = array == ND
    if len(table) and nodata.any():
        hits = shapely.STRtree(table.geometry).query(
            shapely.points(xs[nodata], ys[nodata]), predicate="intersects"
        )
        assert hits.size == 0
    # Regions do not overlap: their union covers exactly the valid pixels.
    if len(table):
        np.testing.assert_allclose(
            shapely.union_all(table.geometry).area, (~nodata).sum() * PIXEL_AREA, rtol=1e-12
        )


def test_holes_and_islands_preserved() -> None:
    array = ring_with_island()
    table = polygonize_array(array, TRANSFORM)
    by_class = {int(c): g for c, g in zip(table.class_id, table.geometry, strict=True)}
    assert sorted(by_class) == [0, 1, 2, 3]
    ring, hole, island = by_class[1], by_class[2], by_class[3]
    assert len(ring.interiors) == 2  # the class-2 hole and the nodata pixel
    assert len(hole.interiors) == 1  # the island
    assert shapely.Polygon(ring.exterior).contains(island)
    assert not ring.intersects(island)
    assert shapely.Polygon(hole.interiors[0]).equals(island)
    assert ring.area == np.count_nonzero(array == 1) * PIXEL_AREA


def test_corner_touches_depend_on_connectivity() -> None:
    array = checkerboard()
    four = polygonize_array(array, TRANSFORM, connectivity=Connectivity.FOUR)
    eight = polygonize_array(array, TRANSFORM, connectivity=Connectivity.EIGHT)
    assert len(four) == array.size
    assert len(eight) == 2
    assert set(shapely.get_type_id(eight.geometry).tolist()) == {shapely.GeometryType.MULTIPOLYGON}


@pytest.mark.parametrize("connectivity", CONNECTIVITIES, ids=["4", "8"])
@pytest.mark.parametrize("name", ["noise", "landscape", "diagonal_touches"])
def test_mean_confidence_is_mean_over_region_pixels(name: str, connectivity: Connectivity) -> None:
    array = RASTERS[name]()
    rng = np.random.default_rng(3)
    confidence = rng.integers(0, 101, array.shape).astype(np.float64)
    confidence[rng.random(array.shape) < 0.1] = np.nan  # unknown pixels are skipped
    table = polygonize_array(array, TRANSFORM, connectivity=connectivity, confidence=confidence)
    xs, ys = pixel_centres(array.shape, TRANSFORM)
    for geom, mean, count in zip(
        table.geometry, table.mean_confidence, table.pixel_count, strict=True
    ):
        bounds = shapely.bounds(geom)
        near = (xs > bounds[0]) & (xs < bounds[2]) & (ys > bounds[1]) & (ys < bounds[3])
        inside = np.zeros(array.shape, dtype=bool)
        inside[near] = shapely.contains_xy(geom, xs[near], ys[near])
        assert inside.sum() == count
        values = confidence[inside]
        values = values[np.isfinite(values)]
        if values.size:
            assert mean == pytest.approx(values.mean(), rel=1e-12)
        else:
            assert np.isnan(mean)


def test_polygonize_labels_refuses_ids_that_are_not_4_connected() -> None:
    labels = np.array([[1, 0], [0, 1]], dtype=np.int32)  # id 1 joined only at a corner
    with pytest.raises(RuntimeError, match="2 polygons for 1 connected regions"):
        polygonize_labels(labels, TRANSFORM)


def test_no_confidence_gives_nan() -> None:
    table = polygonize_array(noise(), TRANSFORM)
    assert np.isnan(table.mean_confidence).all()


def test_bad_arrays_are_refused() -> None:
    with pytest.raises(ConfigError, match="2-D integer"):
        polygonize_array(np.zeros((4, 4), dtype=np.float32), TRANSFORM)
    with pytest.raises(ConfigError, match="confidence shape"):
        polygonize_array(noise(), TRANSFORM, confidence=np.zeros((3, 3)))


# --------------------------------------------------------------------------- label references
# What the vectorizer did before the tracer gave pixel runs: scipy labels, class by class.


def _polygonize_regions(
    classes: np.ndarray, transform: Affine, *, nodata: int, connectivity: Connectivity
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(geometry, class per region, label image)``; label ``i + 1`` is row ``i``."""
    labels, component_class = label_components(classes, nodata=nodata)
    geometry = repair_if_invalid(polygonize_labels(labels, transform))
    if connectivity == Connectivity.EIGHT:
        labels8, component_class = label_components(
            classes, nodata=nodata, connectivity=Connectivity.EIGHT
        )
        part_of = np.zeros(len(geometry) + 1, dtype=np.int64)
        part_of[labels.ravel()] = labels8.ravel()  # every pixel of a 4-part has one 8-id
        geometry = group_parts(geometry, part_of[1:] - 1, len(component_class))
        labels = labels8
    return geometry, component_class, labels


def _region_sums(
    labels: np.ndarray, n: int, confidence: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per region from a label image: pixel count, sum and count of known confidences."""
    flat = labels.ravel()
    pixel_count = np.bincount(flat, minlength=n + 1)[1:].astype(np.int64)
    if confidence is None:
        return pixel_count, np.zeros(n), np.zeros(n, dtype=np.int64)
    values = np.asarray(confidence, dtype=np.float64).ravel()
    has_value = (flat > 0) & np.isfinite(values)
    sums = np.bincount(flat[has_value], weights=values[has_value], minlength=n + 1)[1:]
    counts = np.bincount(flat[has_value], minlength=n + 1)[1:].astype(np.int64)
    return pixel_count, sums, counts


def _labels_from_runs(runs, shape: tuple[int, int]) -> np.ndarray:
    labels = np.zeros(shape, dtype=np.int32)
    for row, start, stop, region in zip(runs.row, runs.start, runs.stop, runs.region, strict=True):
        labels[row, start:stop] = region + 1
    return labels


@pytest.mark.parametrize("seed", range(40))
def test_pixel_runs_label_every_pixel_with_its_polygon(seed: int) -> None:
    """Runs cover each row in order; their ids are the 4-connected regions, and polygon k
    holds the centres of the pixels with id k + 1 (so sums over runs are per-region sums)."""
    rng = np.random.default_rng(seed)
    h, w = (int(x) for x in rng.integers(1, 40, 2))
    values = rng.integers(0, int(rng.integers(1, 5)), (h, w)).astype(np.uint8)
    values[rng.random((h, w)) < 0.15] = ND
    polygons, value, runs, _ = trace_regions(values, ND)
    first = runs.row * w + runs.start
    assert np.array_equal(first, np.sort(first)) and first[0] == 0
    assert np.array_equal(np.append(first[1:], h * w), runs.row * w + runs.stop)
    labels = _labels_from_runs(runs, (h, w))
    assert np.array_equal(labels == 0, values == ND)
    reference, _ = label_components(values, nodata=ND)
    pairs = set(zip(labels[labels > 0].tolist(), reference[reference > 0].tolist(), strict=True))
    assert len(pairs) == len(polygons) == int(reference.max(initial=0))  # a bijection
    rows, cols = np.nonzero(labels)
    k = labels[rows, cols] - 1
    assert np.array_equal(value[k], values[rows, cols])
    assert shapely.contains_xy(polygons[k], cols + 0.5, rows + 0.5).all()
    confidence = rng.integers(0, 101, (h, w)).astype(np.float64)
    confidence[rng.random((h, w)) < 0.2] = np.nan
    for got, want in zip(
        run_sums(runs, len(polygons), confidence),
        _region_sums(labels, len(polygons), confidence),
        strict=True,
    ):
        assert np.array_equal(got, want)
    for got, want in zip(run_edge_labels(runs, h, w), edge_strips(labels), strict=True):
        assert np.array_equal(got, want)


@pytest.mark.parametrize("seed", range(30))
@pytest.mark.parametrize("connectivity", [Connectivity.FOUR, Connectivity.EIGHT], ids=["4", "8"])
def test_traced_regions_equal_the_labelled_ones(seed: int, connectivity: Connectivity) -> None:
    """Regions from the tracer (8-connected: parts joined at corner contacts) are those of
    scipy's labelling, in the same order, with the same geometry and pixel ids."""
    rng = np.random.default_rng(100 + seed)
    h, w = (int(x) for x in rng.integers(1, 30, 2))
    values = rng.integers(0, int(rng.integers(1, 4)), (h, w)).astype(np.uint8)
    values[rng.random((h, w)) < 0.1] = ND
    geometry, classes, runs = traced_regions(
        values, Affine.identity(), nodata=ND, connectivity=connectivity
    )
    ref_geometry, ref_classes, ref_labels = _polygonize_regions(
        values, Affine.identity(), nodata=ND, connectivity=connectivity
    )
    assert np.array_equal(classes, ref_classes)
    assert np.array_equal(_labels_from_runs(runs, (h, w)), ref_labels)
    assert len(geometry) == len(ref_geometry)
    assert shapely.equals(geometry, ref_geometry).all()
    assert shapely.is_valid(geometry).all()


@pytest.mark.parametrize("seed", range(30))
@pytest.mark.parametrize("connectivity", [Connectivity.FOUR, Connectivity.EIGHT], ids=["4", "8"])
def test_label_regions_equal_label_components(seed: int, connectivity: Connectivity) -> None:
    """The label image from pixel runs (what the block-wise sieve uses) is scipy's, id for id."""
    rng = np.random.default_rng(200 + seed)
    h, w = (int(x) for x in rng.integers(1, 30, 2))
    values = rng.integers(0, int(rng.integers(1, 4)), (h, w)).astype(np.uint8)
    values[rng.random((h, w)) < 0.1] = ND
    labels, classes = label_regions(values, nodata=ND, connectivity=connectivity)
    ref_labels, ref_classes = label_components(values, nodata=ND, connectivity=connectivity)
    assert np.array_equal(labels, ref_labels)
    assert np.array_equal(classes, ref_classes)
