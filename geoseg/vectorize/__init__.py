"""Class raster -> land-cover polygons with per-region attributes, block-wise and in parallel.

One feature per connected region of equal class value; nodata is never vectorized and holes
are kept. The core, `polygonize_array`, is a pure function of one array and its affine
transform. 4-connected regions are traced by `geoseg.vectorize.trace`: a crack tracer in
array operations that gives, vertex for vertex, the rings of GDAL's polygonizer
(``gdal_polygonize.py``, ``rasterio.features.shapes``) about twice as fast as GDAL and
with no Python object per feature; it also tells which region every run of equal pixels
along a row belongs to, so per-region numbers -- pixel count, confidence sums -- are exact
sums over those runs, with no label image. With 8-connectivity each class is labelled into
components (scipy) and the 4-connected parts of each 8-connected region are grouped into one
MultiPolygon (valid, unlike GDAL's self-touching 8-connected rings).

`vectorize_raster` is the file-level stage. The raster is cut into square blocks
(`BlockGrid`); each block is read by the worker that polygonizes it (windowed reads: the
raster never passes through the client). Everything is computed in pixel coordinates, where
block seams are exact integers, and mapped to the CRS with GDAL's own formula at the end, so
coordinates are bit-identical to a single pass. A region that touches no seam is complete: it
is finished in its block (area, perimeter, mean confidence) and streamed to the GeoPackage
writer as soon as its block is done. Only the pieces that touch a seam stay on the workers.
Their labels along the block edges are compared across each seam; pieces of one region are
grouped by a union-find (connected components of the seam graph); each merge task fetches
just the pieces of its groups and unions them on the crack lattice
(`geoseg.vectorize.crackunion`: seam edges cut into unit cracks, those run both ways within
a region dropped, the rest re-linked with the tracer's rules); simplified regions take a
coverage union and 8-connected ones GEOS's overlay union. No worker ever
holds more than its blocks and the groups it merges. Pixel counts and confidence sums add up
exactly across seams. The result is the polygon set of one single pass (and of
``gdal_polygonize``), vertex for vertex: collinear vertices left at the seams are removed.

Options: ``min_area_m2`` first merges smaller regions into their largest neighbour exactly as
GDAL's sieve filter (``rasterio.features.sieve``) does on the whole raster -- not
approximately with halos: region sizes and neighbour choices are made global through the same
seam graph (see `geoseg.vectorize.sieve`). ``simplify_m`` simplifies each block's regions as one
coverage (``shapely.coverage_simplify``, nodata included) with the block outline fixed;
after merging, every boundary along a seam has a vertex at each node (where a boundary meets
the seam from either side) and none in between, so shared boundaries stay shared and there
are no gaps or overlaps, across seams too. The price: a boundary that crosses a seam keeps
its crossing point.

Rasters that fit in one block never start Dask; larger ones run on any ``dask.distributed``
client: a LocalCluster started here (``workers`` processes) or an existing scheduler. With
``workers=0`` the same block tasks run one after another in this process.

Modules, in dependency order: `options` (plain data), `core` (pure polygonize), `blocks`
(block grid and block reads), `seams` (seam merge), `executors` (local / Dask), `sieve`
(exact block-wise sieve), `run` (the block-wise run), `files` (`vectorize_raster`).
"""

from geoseg.io.outputs import classes_for_raster, raster_scene_name
from geoseg.vectorize.api import sieve_threshold_px, vectorize_file, vectorize_raster
from geoseg.vectorize.core import label_components, polygonize_array, polygonize_labels
from geoseg.vectorize.executors import SharedClient, dask_client, default_workers
from geoseg.vectorize.options import (
    BUILTIN_FIELDS,
    DEFAULT_BLOCK_PX,
    Connectivity,
    PolygonTable,
    VectorizeOptions,
    VectorizeResult,
)

__all__ = [
    "BUILTIN_FIELDS",
    "DEFAULT_BLOCK_PX",
    "Connectivity",
    "PolygonTable",
    "SharedClient",
    "VectorizeOptions",
    "VectorizeResult",
    "classes_for_raster",
    "dask_client",
    "default_workers",
    "label_components",
    "polygonize_array",
    "polygonize_labels",
    "raster_scene_name",
    "sieve_threshold_px",
    "vectorize_file",
    "vectorize_raster",
]
