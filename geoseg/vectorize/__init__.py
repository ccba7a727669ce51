"""Class raster -> land-cover polygons with per-region attributes, block-wise and in parallel.

One feature per connected region of equal class value (4- or 8-connected); nodata is never
vectorized and holes are kept. The raster is cut into blocks that run in this process or on
Dask, and regions cut by seams are merged exactly: whatever the blocks, the polygons are those
of one pass of ``gdal_polygonize`` (4-connected: vertex for vertex; 8-connected: the same
areas, as valid MultiPolygons), unless simplified.

Start reading at `api` (`vectorize_raster`, the file stage), then `blockwise` (the block-wise
run); `polygonize` is the pure whole-array path on top of the crack tracer (`trace`).
"""

from geoseg.vectorize.api import (
    SourceRaster,
    sieve_threshold_px,
    vectorize_file,
    vectorize_raster,
)
from geoseg.vectorize.executors import (
    SharedClient,
    cluster_pays_off,
    dask_client,
    default_workers,
    wants_cluster,
)
from geoseg.vectorize.options import (
    BUILTIN_FIELDS,
    DEFAULT_BLOCK_PX,
    Connectivity,
    PolygonTable,
    VectorizeOptions,
    VectorizeResult,
)
from geoseg.vectorize.polygonize import label_components, polygonize_array, polygonize_labels

__all__ = [
    "BUILTIN_FIELDS",
    "DEFAULT_BLOCK_PX",
    "Connectivity",
    "PolygonTable",
    "SharedClient",
    "SourceRaster",
    "VectorizeOptions",
    "VectorizeResult",
    "cluster_pays_off",
    "dask_client",
    "default_workers",
    "label_components",
    "polygonize_array",
    "polygonize_labels",
    "sieve_threshold_px",
    "vectorize_file",
    "vectorize_raster",
    "wants_cluster",
]
