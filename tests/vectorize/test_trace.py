"""Crack tracing (geoseg.vectorize.trace), checked polygon for polygon against GDAL.

``trace_polygons`` promises exactly the polygons of GDAL's polygonizer with 4-connectivity
(``rasterio.features.shapes``): same rings, same vertices, same map coordinates bit for bit.
The reference is built the plain way (GeoJSON dicts -> ``shapely.geometry.shape``) and both
sides are compared as multisets of (normalized WKB, value).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence

import numpy as np
import pytest
import rasterio.features
import shapely
from affine import Affine
from shapely.geometry import Polygon, shape

from geoseg.vectorize.trace import Rings, trace_polygons, trace_rings

ND = 255
NORTH_UP = Affine(10.0, 0.0, 500_000.0, 0.0, -10.0, 5_000_000.0)
ROTATED = Affine(9.7, 2.3, 500_123.45, -1.9, -9.8, 5_000_067.89)  # rotated and sheared
SKEWED_UP = Affine(0.5, 0.1, -3.25, 0.2, 0.75, 10.5)  # positive determinant: rings flip
N_RANDOM = 400

Key = tuple[bytes, float]


# --------------------------------------------------------------------------- helpers


def gdal_shapes(
    values: np.ndarray, nodata: int, transform: Affine | None = None
) -> tuple[list[Polygon], list[float]]:
    """GDAL's polygons (4-connected) and their values, via rasterio's GeoJSON dicts."""
    pairs = rasterio.features.shapes(
        values,
        mask=values != nodata,
        connectivity=4,
        transform=Affine.identity() if transform is None else transform,
    )
    geoms, vals = [], []
    for geojson, value in pairs:
        geoms.append(shape(geojson))
        vals.append(float(value))
    return geoms, vals


def keys(polygons: Sequence[Polygon] | np.ndarray, values: Sequence[float]) -> Counter[Key]:
    """Multiset of (normalized WKB, value): equal iff same rings, vertices and coordinates."""
    return Counter(
        (shapely.to_wkb(shapely.normalize(p)), float(v))
        for p, v in zip(polygons, values, strict=True)
    )


def readable(polygons: Sequence[Polygon] | np.ndarray, values: Sequence[float]) -> list:
    """Sorted (normalized WKT, value) pairs, for failure messages."""
    pairs = zip(polygons, values, strict=True)
    return sorted((shapely.normalize(p).wkt, float(v)) for p, v in pairs)


def mismatch(values: np.ndarray, nodata: int, transform: Affine | None = None) -> str | None:
    """Why ``trace_polygons`` differs from GDAL on ``values``, or None when it does not."""
    ref_geoms, ref_values = gdal_shapes(values, nodata, transform)
    try:
        polygons, poly_values = trace_polygons(values, nodata, transform)
    except Exception as error:  # report the raster, not only the traceback
        return f"raised {error!r}"
    if len(polygons) != len(ref_geoms):
        return f"{len(polygons)} polygons, GDAL {len(ref_geoms)}"
    if len(poly_values) != len(polygons):
        return f"{len(poly_values)} values for {len(polygons)} polygons"
    if keys(polygons, poly_values) != keys(ref_geoms, ref_values):
        ours, ref = readable(polygons, poly_values), readable(ref_geoms, ref_values)
        return f"polygons differ:\n ours {ours}\n gdal {ref}"
    if len(polygons) and not shapely.is_valid(polygons).all():
        return f"invalid: {shapely.is_valid_reason(polygons).tolist()}"
    return None


def random_raster(rng: np.random.Generator) -> np.ndarray:
    """1..14 px each side, 1..4 values; pixel noise or blocks (for holes), maybe nodata."""
    height, width = (int(n) for n in rng.integers(1, 15, 2))
    n_values = int(rng.integers(1, 5))
    block = int(rng.choice([1, 1, 2, 3]))
    coarse = rng.integers(0, n_values, (height // block + 1, width // block + 1))
    values = np.kron(coarse, np.ones((block, block), dtype=np.int64))[:height, :width]
    if block > 1:  # break the blocks up a little: ragged edges, single-pixel islands
        speckle = rng.random((height, width)) < 0.15
        values[speckle] = rng.integers(0, n_values, int(speckle.sum()))
    values = values.astype(np.uint8)
    if rng.random() < 0.4:
        values[rng.random((height, width)) < rng.uniform(0.02, 0.4)] = ND
    return values


def random_rasters(seed: int, count: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [random_raster(rng) for _ in range(count)]


def assert_like_gdal(values: np.ndarray, nodata: int, transform: Affine | None = None) -> None:
    problem = mismatch(values, nodata, transform)
    assert problem is None, f"{problem}\nraster:\n{values!r}"


def assert_polygons(
    values: np.ndarray, nodata: int, expected: Sequence[tuple[str, float]]
) -> np.ndarray:
    """``trace_polygons`` (and GDAL) give exactly the hand-written (WKT, value) polygons."""
    polygons, poly_values = trace_polygons(values, nodata)
    want = keys([shapely.from_wkt(wkt) for wkt, _ in expected], [v for _, v in expected])
    assert keys(polygons, poly_values) == want
    assert keys(*gdal_shapes(values, nodata)) == want  # the expectation itself is GDAL's
    assert shapely.is_valid(polygons).all()
    assert set(shapely.get_type_id(polygons).tolist()) == {shapely.GeometryType.POLYGON}
    return polygons


def ring_polygons(rings: Rings) -> np.ndarray:
    """Each ring of ``rings`` alone as a polygon (pixel coordinates)."""
    return shapely.polygons(shapely.linearrings(rings.xy, indices=rings.ring_of_vertex))


def nested() -> np.ndarray:
    """1 around 2 around 1: the inner 1 has the outer 1's value but is another region."""
    values = np.ones((5, 5), dtype=np.uint8)
    values[1:4, 1:4] = 2
    values[2, 2] = 1
    return values


def pinched() -> np.ndarray:
    """A ring of 1s closed only diagonally (at vertex (1, 1)) around a 0 pixel."""
    return np.array([[0, 1, 1], [1, 0, 1], [1, 1, 1]], dtype=np.uint8)


def blobs() -> np.ndarray:
    """Blocky random classes with nodata (12 x 13): holes, islands in holes, pinches."""
    rng = np.random.default_rng(5)
    values = np.kron(rng.integers(0, 3, (6, 7)), np.ones((2, 2), dtype=np.int64))[:12, :13]
    values[rng.random((12, 13)) < 0.15] = 1
    values[rng.random((12, 13)) < 0.05] = ND
    return values.astype(np.uint8)


# --------------------------------------------------------------------------- vs GDAL, random


def test_random_rasters_same_polygons_as_gdal() -> None:
    """400 seeded random rasters: polygons, vertices and values exactly GDAL's, all valid.

    Failures collect and the smallest failing raster is printed, to make it a fixed case.
    """
    rasters = random_rasters(seed=20240611, count=N_RANDOM)
    failures = [(a, problem) for a in rasters if (problem := mismatch(a, ND)) is not None]
    if failures:
        smallest, problem = min(failures, key=lambda item: item[0].size)
        pytest.fail(f"{len(failures)}/{N_RANDOM} differ; smallest:\n{smallest!r}\n{problem}")
    # The generator must exercise the hard parts: holes, and holes touching their shell.
    holes = touching = 0
    for a in rasters:
        for geom in gdal_shapes(a, ND)[0]:
            holes += len(geom.interiors)
            touching += sum(geom.exterior.intersects(hole) for hole in geom.interiors)
    assert holes >= 30
    assert touching >= 5


@pytest.mark.parametrize("transform", [NORTH_UP, ROTATED, SKEWED_UP], ids=["north", "rot", "up"])
def test_map_coordinates_bit_identical_to_gdal(transform: Affine) -> None:
    """Pixel -> map uses GDAL's formula and order, so coordinates are bit-identical.

    Normalized WKB compares every coordinate's bits; a different (even algebraically equal)
    evaluation order would round differently somewhere on these transforms.
    """
    for values in [blobs(), nested(), pinched(), *random_rasters(seed=7, count=40)]:
        assert_like_gdal(values, ND, transform)


def test_map_coordinates_are_pixel_corners_through_transform() -> None:
    """The transform moves vertices only: same vertex count, each one ``transform * (col, row)``."""
    values = blobs()
    pixel, _ = trace_polygons(values, ND)
    mapped, _ = trace_polygons(values, ND, ROTATED)
    cols, rows = shapely.get_coordinates(pixel).T
    xs, ys = ROTATED @ (cols, rows)
    np.testing.assert_allclose(shapely.get_coordinates(mapped), np.column_stack([xs, ys]))


# --------------------------------------------------------------------------- explicit cases


def test_region_meeting_itself_diagonally_is_shell_and_touching_hole() -> None:
    """A ring of 1s closed only at a corner: one polygon, its hole touching the shell at (1, 1).

    The 4-connected 1s hug the 0 pixel; the boundary passes vertex (1, 1) twice and must be
    split there (GDAL does) or the polygon is a self-touching, invalid ring. The two 0 pixels
    meet only diagonally: two polygons.
    """
    polygons = assert_polygons(
        pinched(),
        ND,
        [
            ("POLYGON ((1 0, 3 0, 3 3, 0 3, 0 1, 1 1, 1 0), (1 1, 1 2, 2 2, 2 1, 1 1))", 1),
            ("POLYGON ((0 0, 1 0, 1 1, 0 1, 0 0))", 0),
            ("POLYGON ((1 1, 2 1, 2 2, 1 2, 1 1))", 0),
        ],
    )
    (ring_polygon,) = [p for p in polygons if len(p.interiors)]
    assert ring_polygon.exterior.intersection(ring_polygon.interiors[0]).equals(shapely.Point(1, 1))


def test_pinch_next_to_nodata_and_twice_on_one_ring() -> None:
    """The 1s meet themselves diagonally at two vertices, one beside nodata: three holes
    (two 0 pixels and the nodata one) touching the shell and each other at points, like GDAL.
    """
    values = np.array(
        [
            [1, 1, 1, 1, 1],
            [1, 0, 1, ND, 1],
            [1, 1, 0, 1, 1],
            [1, 1, 1, 1, 1],
        ],
        dtype=np.uint8,
    )
    assert_like_gdal(values, ND)
    polygons, poly_values = trace_polygons(values, ND)
    (ones,) = polygons[poly_values == 1]
    assert len(ones.interiors) == 3
    assert ones.is_valid


def test_same_value_meeting_diagonally_stays_apart() -> None:
    """2x2 checkerboard: 4-connectivity keeps diagonal neighbours of one value apart."""
    assert_polygons(
        np.array([[1, 2], [2, 1]], dtype=np.uint8),
        ND,
        [
            ("POLYGON ((0 0, 1 0, 1 1, 0 1, 0 0))", 1),
            ("POLYGON ((1 1, 2 1, 2 2, 1 2, 1 1))", 1),
            ("POLYGON ((1 0, 2 0, 2 1, 1 1, 1 0))", 2),
            ("POLYGON ((0 1, 1 1, 1 2, 0 2, 0 1))", 2),
        ],
    )


def test_diagonal_with_nodata_across() -> None:
    """Same-value pixels diagonal across a vertex whose other two pixels are nodata."""
    assert_polygons(
        np.array([[3, ND], [ND, 3]], dtype=np.uint8),
        ND,
        [
            ("POLYGON ((0 0, 1 0, 1 1, 0 1, 0 0))", 3),
            ("POLYGON ((1 1, 2 1, 2 2, 1 2, 1 1))", 3),
        ],
    )


def test_single_pixel() -> None:
    """One pixel: the unit square, four corners only."""
    polygons = assert_polygons(
        np.array([[7]], dtype=np.uint8), ND, [("POLYGON ((0 0, 1 0, 1 1, 0 1, 0 0))", 7)]
    )
    assert shapely.get_num_coordinates(polygons).tolist() == [5]


@pytest.mark.parametrize("shape_", [(1, 6), (6, 1)], ids=["row", "column"])
def test_strip_is_one_rectangle(shape_: tuple[int, int]) -> None:
    """A 1xN (or Nx1) strip of one value: one rectangle, no vertices along its long sides."""
    height, width = shape_
    polygons = assert_polygons(
        np.full(shape_, 3, dtype=np.uint8),
        ND,
        [(f"POLYGON ((0 0, {width} 0, {width} {height}, 0 {height}, 0 0))", 3)],
    )
    assert shapely.get_num_coordinates(polygons).tolist() == [5]


def test_strip_of_runs() -> None:
    """A 1-pixel-high strip of runs: one rectangle per run, a value may come back."""
    assert_polygons(
        np.array([[1, 1, 2, 2, 2, 1, ND, 1]], dtype=np.uint8),
        ND,
        [
            ("POLYGON ((0 0, 2 0, 2 1, 0 1, 0 0))", 1),
            ("POLYGON ((2 0, 5 0, 5 1, 2 1, 2 0))", 2),
            ("POLYGON ((5 0, 6 0, 6 1, 5 1, 5 0))", 1),
            ("POLYGON ((7 0, 8 0, 8 1, 7 1, 7 0))", 1),
        ],
    )


def test_all_nodata_gives_nothing() -> None:
    """No valid pixel: no polygons, no values, no rings (and GDAL agrees)."""
    values = np.full((4, 6), ND, dtype=np.uint8)
    polygons, poly_values = trace_polygons(values, ND)
    assert len(polygons) == 0
    assert len(poly_values) == 0
    assert len(trace_rings(values, ND)) == 0
    assert gdal_shapes(values, ND) == ([], [])


def test_nested_same_value_regions_get_their_own_holes() -> None:
    """1 around 2 around 1: three polygons; the outer 1's hole is the 2, not the inner 1.

    The inner 1 has the outer one's value but is not 4-connected to it: the hole must go to
    the right shell of that value.
    """
    assert_polygons(
        nested(),
        ND,
        [
            ("POLYGON ((0 0, 5 0, 5 5, 0 5, 0 0), (1 1, 4 1, 4 4, 1 4, 1 1))", 1),
            ("POLYGON ((1 1, 4 1, 4 4, 1 4, 1 1), (2 2, 3 2, 3 3, 2 3, 2 2))", 2),
            ("POLYGON ((2 2, 3 2, 3 3, 2 3, 2 2))", 1),
        ],
    )


def test_nested_deeper_and_side_by_side() -> None:
    """Same-value regions nested three deep, and two holes in one polygon, like GDAL."""
    values = np.ones((9, 12), dtype=np.uint8)
    values[1:8, 1:8] = 2
    values[2:7, 2:7] = 1
    values[3:6, 3:6] = 2
    values[4, 4] = 1
    values[2, 9] = 2
    values[5:7, 9:11] = 2
    assert_like_gdal(values, ND)
    polygons, poly_values = trace_polygons(values, ND)
    assert sorted(len(p.interiors) for p in polygons) == [0, 0, 0, 1, 1, 1, 3]
    np.testing.assert_array_equal(
        np.sort(shapely.area(polygons)), np.sort([1, 1, 2 * 2, 8, 16, 24, 12 * 9 - 49 - 1 - 4])
    )
    assert sorted(poly_values.tolist()) == [1, 1, 1, 2, 2, 2, 2]


def test_int32_labels_with_large_ids() -> None:
    """An int32 label image, nodata 0, ids past uint16 and negative: values kept exactly."""
    labels = np.zeros((4, 6), dtype=np.int32)
    labels[0:2, 0:2] = 70_000
    labels[2:4, 1:4] = 70_001
    labels[0, 3:6] = 2_000_000_000
    labels[1:3, 5] = -70_000
    labels[3, 5] = 70_000  # same id, another region
    polygons = assert_polygons(
        labels,
        0,
        [
            ("POLYGON ((0 0, 2 0, 2 2, 0 2, 0 0))", 70_000),
            ("POLYGON ((1 2, 4 2, 4 4, 1 4, 1 2))", 70_001),
            ("POLYGON ((3 0, 6 0, 6 1, 3 1, 3 0))", 2_000_000_000),
            ("POLYGON ((5 1, 6 1, 6 3, 5 3, 5 1))", -70_000),
            ("POLYGON ((5 3, 6 3, 6 4, 5 4, 5 3))", 70_000),
        ],
    )
    _, poly_values = trace_polygons(labels, 0)
    assert poly_values.dtype == np.int32
    assert len(polygons) == 5


# --------------------------------------------------------------------------- vertices


def assert_vertices_only_at_turns(polygons: np.ndarray) -> None:
    """Every ring is closed, axis-parallel, and turns at every vertex (no collinear runs)."""
    rings = shapely.get_rings(polygons)
    for ring in rings:
        coords = shapely.get_coordinates(ring)
        assert len(coords) >= 5
        np.testing.assert_array_equal(coords[0], coords[-1])
        edges = np.diff(coords, axis=0)
        assert ((edges[:, 0] == 0) != (edges[:, 1] == 0)).all(), coords  # on the lattice
        following = np.roll(edges, -1, axis=0)  # closed: the last edge turns into the first
        cross = edges[:, 0] * following[:, 1] - edges[:, 1] * following[:, 0]
        assert (cross != 0).all(), coords


def test_vertices_only_where_rings_turn() -> None:
    """No collinear consecutive vertices in any ring, including at each ring's start."""
    for values in [blobs(), nested(), pinched(), *random_rasters(seed=3, count=80)]:
        polygons, _ = trace_polygons(values, ND)
        assert_vertices_only_at_turns(polygons)


# --------------------------------------------------------------------------- Rings


@pytest.mark.parametrize("make", [pinched, nested, blobs])
def test_rings_shell_flags_and_areas(make: Callable[[], np.ndarray]) -> None:
    """``shell``/``area`` agree with shapely and GDAL: shells are its exteriors, holes its
    interiors; a hole belongs to a shell of its value.
    """
    values = make()
    rings = trace_rings(values, ND)
    alone = ring_polygons(rings)
    np.testing.assert_array_equal(rings.area, shapely.area(alone))
    np.testing.assert_array_equal(rings.shell, shapely.is_ccw(shapely.get_exterior_ring(alone)))

    geoms, ref_values = gdal_shapes(values, ND)
    exteriors = keys([Polygon(g.exterior) for g in geoms], ref_values)
    interiors = keys(
        [Polygon(h) for g in geoms for h in g.interiors],
        [v for g, v in zip(geoms, ref_values, strict=True) for _ in g.interiors],
    )
    assert keys(alone[rings.shell], rings.value[rings.shell]) == exteriors
    assert keys(alone[~rings.shell], rings.value[~rings.shell]) == interiors

    # shells are numbered 0..n-1 by value, then in ring (first pixel) order
    shells = np.flatnonzero(rings.shell)
    numbered = rings.polygon[shells]
    np.testing.assert_array_equal(np.sort(numbered), np.arange(len(shells)))
    by_number = shells[np.argsort(numbered)]
    np.testing.assert_array_equal(by_number, shells[np.argsort(rings.value[shells], kind="stable")])
    shell_of = by_number[rings.polygon]
    np.testing.assert_array_equal(rings.value, rings.value[shell_of])
    assert shapely.covers(alone[shell_of], alone).all()


@pytest.mark.parametrize("make", [pinched, nested, blobs])
def test_rings_pixel_is_a_pixel_of_the_ring_region(make: Callable[[], np.ndarray]) -> None:
    """``pixel_x``/``pixel_y`` is a pixel centre with the ring's value, inside its polygon."""
    values = make()
    rings = trace_rings(values, ND)
    polygons, _ = trace_polygons(values, ND)
    cols, rows = rings.pixel_x - 0.5, rings.pixel_y - 0.5
    np.testing.assert_array_equal(cols, np.round(cols))
    np.testing.assert_array_equal(rows, np.round(rows))
    cols, rows = cols.astype(int), rows.astype(int)
    assert ((cols >= 0) & (cols < values.shape[1]) & (rows >= 0) & (rows < values.shape[0])).all()
    np.testing.assert_array_equal(values[rows, cols], rings.value)
    centres = shapely.points(rings.pixel_x, rings.pixel_y)
    assert shapely.contains(polygons[rings.polygon], centres).all()


def test_float_values_are_refused() -> None:
    """NaN never equals itself, so float rasters (NaN nodata) would trace wrong: refused."""
    with pytest.raises(TypeError, match="integer"):
        trace_polygons(np.array([[1.5, np.nan], [1.5, 2.0]], dtype=np.float32), np.nan)
