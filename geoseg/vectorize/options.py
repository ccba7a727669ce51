"""Options, results and constants of vectorization (plain data shared by every stage)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from enum import IntEnum
from pathlib import Path

import numpy as np

from geoseg.errors import ConfigError, option

UNKNOWN_CLASS_COLOR = "#808080"
"""Style colour for class values found in a raster but missing from the class list."""

BUILTIN_FIELDS = (
    "class_id",
    "class_name",
    "pixel_count",
    "area_m2",
    "perimeter_m",
    "mean_confidence",
)
"""Attribute columns of a written polygon layer, in order (extra attributes follow)."""

DEFAULT_BLOCK_PX = 2048
"""Default block edge. Workers peaked at ~300 MB RSS (~100 MB above an idle worker) on a
10k x 10k raster with it, and would on any larger one: memory follows the block, not the
raster."""

MERGE_BATCH_PIECES = 5000
"""Most seam pieces per merge task (a group of pieces of one region is never split); fewer
when that gives each worker at least two merge tasks."""

WRITE_BATCH_FEATURES = 20_000
"""Rows the client buffers before appending them to the GeoPackage in one transaction."""


class Connectivity(IntEnum):
    """Which pixel neighbours join a region: edges only (4) or edges and corners (8)."""

    FOUR = 4
    EIGHT = 8


@dataclass(frozen=True, eq=False)
class PolygonTable:
    """Parallel per-region arrays: one row per connected region of one class.

    ``geometry`` holds shapely Polygons (4-connectivity) or, where an 8-connected region is
    joined only through pixel corners, MultiPolygons: an OGC-valid polygon cannot have parts
    that touch only at a point. ``mean_confidence`` is NaN where no confidence was given.
    """

    geometry: np.ndarray
    class_id: np.ndarray
    pixel_count: np.ndarray
    mean_confidence: np.ndarray

    def __len__(self) -> int:
        return len(self.geometry)


@dataclass(frozen=True)
class VectorizeResult:
    """What `vectorize_raster` wrote: the GeoPackage and per-class polygon counts and areas.

    The per-class dicts (names too) have an entry for every class in the class list (0 if
    absent) and for any unlisted class value found in the raster. ``blocks`` is the number of
    blocks the raster was cut into, ``dask_workers`` the workers of the Dask cluster used (0:
    no Dask).
    """

    path: Path
    n_polygons: int
    polygons_per_class: dict[int, int] = field(default_factory=dict)
    area_m2_per_class: dict[int, float] = field(default_factory=dict)
    blocks: int = 1
    dask_workers: int = 0
    class_names: dict[int, str] = field(default_factory=dict)


@dataclass(frozen=True)
class VectorizeOptions:
    """How `vectorize_raster` splits, distributes and cleans up the work.

    ``block_size_px``: edge of the square blocks; worker memory grows with its square, not
    with the raster. ``workers``: processes of the LocalCluster started when the raster has
    more than one block (None: one per CPU core, at most 8, where `cluster_pays_off`, else
    none; 0: no Dask -- blocks are processed
    one after another in this process, still with bounded memory). ``dask_address``: use this
    running scheduler instead (``tcp://host:8786``); its workers must be able to read the
    raster paths. ``min_area_m2``: regions smaller than this are merged into their largest
    neighbour first (GDAL's sieve, exact across blocks). ``simplify_m``: coverage
    simplification tolerance in metres (0: none).
    """

    block_size_px: int = DEFAULT_BLOCK_PX
    workers: int | None = None
    dask_address: str | None = None
    min_area_m2: float = 0.0
    simplify_m: float = 0.0

    @property
    def uses_dask(self) -> bool:
        """Whether rasters of several blocks go to Dask (False: ``workers=0``, no address)."""
        return self.dask_address is not None or self.workers != 0

    def __post_init__(self) -> None:
        if isinstance(self.block_size_px, bool) or self.block_size_px < 1:
            raise ConfigError(
                f"{option('block_size')}: {self.block_size_px} px is not a block size; give a "
                "positive "
                f"number of pixels (default {DEFAULT_BLOCK_PX})"
            )
        if self.workers is not None and self.workers < 0:
            raise ConfigError(
                f"{option('workers')}: {self.workers} is negative; give a number of worker "
                "processes "
                "(0 = no Dask, blocks one after another in this process)"
            )
        for name, value in (("min_area", self.min_area_m2), ("simplify", self.simplify_m)):
            if not math.isfinite(value) or value < 0:
                raise ConfigError(f"{option(name)}: {value} must be a finite number >= 0 (metres)")
