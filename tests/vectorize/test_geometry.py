"""Polygon edits in pixel coordinates (geoseg.vectorize.geometry)."""

from __future__ import annotations

import numpy as np
import shapely

from geoseg.vectorize.geometry import cut_at_pixels, repair_if_invalid, without_vertices
from geoseg.vectorize.trace import trace_polygons
from tests.support.rasters import ND, diagonal_touches, noise, ring_with_island


def test_repair_keeps_area_of_corner_touching_rings() -> None:
    # The ring GDAL writes for two pixels joined at a corner with 8-connectivity.
    bowtie = shapely.Polygon([(0, 0), (0, 1), (1, 1), (1, 2), (2, 2), (2, 1), (1, 1), (1, 0)])
    assert not bowtie.is_valid
    repaired = repair_if_invalid(np.array([bowtie, shapely.box(5, 5, 6, 6)], dtype=object))
    assert shapely.is_valid(repaired).all()
    assert repaired[0].geom_type == "MultiPolygon"
    assert repaired[0].area == 2.0
    assert repaired[1].equals(shapely.box(5, 5, 6, 6))


def _every_edge(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.ones(len(a), dtype=bool)


def _collinear(xy: np.ndarray, collinear: np.ndarray) -> np.ndarray:
    return collinear


def test_cut_at_every_pixel_then_dropping_collinear_vertices_gives_the_traced_rings() -> None:
    """Cutting adds a vertex at every pixel corner along the edges and nothing else; dropping
    the vertices inside straight edges gives back the traced rings, vertex for vertex."""
    for values in (ring_with_island(), diagonal_touches(), noise()):
        polygons, _ = trace_polygons(values, ND)
        cut = cut_at_pixels(polygons, _every_edge)
        assert shapely.equals(cut, polygons).all()
        perimeter = np.rint(shapely.length(polygons)).astype(np.int64)
        n_rings = shapely.get_num_interior_rings(polygons) + 1
        assert np.array_equal(shapely.get_num_coordinates(cut), perimeter + n_rings)
        back = without_vertices(cut, _collinear)
        assert shapely.equals_exact(back, polygons, tolerance=0).all()
