"""The file stage: class raster in, styled GeoPackage layer out.

`vectorize_raster` checks the rasters, runs the blocks (`geoseg.vectorize.blockwise`) and
writes the finished regions as they come; `vectorize_file` is `geoseg vectorize` (classes from
a model package or the raster itself); `sieve_threshold_px` turns ``--min-area`` into pixels.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pyproj
import rasterio
import rasterio.errors
import rasterio.features

from geoseg.classes import ClassInfo, validate_classes
from geoseg.errors import ConfigError, SceneError, option
from geoseg.geo.grid import BlockGrid
from geoseg.geo.scene import SceneGrid
from geoseg.io.outputs import classes_for_raster, raster_scene_name
from geoseg.io.raster import unreadable_raster
from geoseg.io.vector import LayerGeometry, PolygonLayerWriter
from geoseg.vectorize.blocks import BlockJob, FeatureBatch
from geoseg.vectorize.blockwise import run_blocks
from geoseg.vectorize.executors import SharedClient, executor_for
from geoseg.vectorize.options import (
    BUILTIN_FIELDS,
    UNKNOWN_CLASS_COLOR,
    WRITE_BATCH_FEATURES,
    Connectivity,
    VectorizeOptions,
    VectorizeResult,
)

if TYPE_CHECKING:
    from distributed import Client


def _inspect_class_raster(path: Path) -> SceneGrid:
    """Size, grid and CRS of a class raster; refuse what cannot be vectorized."""
    try:
        with rasterio.open(path) as src:
            if src.crs is None:
                raise SceneError(
                    f"{path}: the class raster has no CRS, so polygons cannot be placed on a "
                    "map; assign one (gdal_edit.py -a_srs EPSG:<code>) or predict from a "
                    "georeferenced scene"
                )
            if not np.issubdtype(np.dtype(src.dtypes[0]), np.integer):
                raise SceneError(
                    f"{path}: band 1 is {src.dtypes[0]}, not a class raster; vectorize the "
                    "uint8 classes.tif written by prediction"
                )
            return SceneGrid(src.crs, src.transform, src.height, src.width)
    except rasterio.errors.RasterioError as exc:
        raise unreadable_raster(path, exc) from exc


def _check_same_grid(path: Path, raster: SceneGrid, what: str) -> None:
    """Refuse a companion raster (confidence, source) not on the class raster's grid."""
    try:
        with rasterio.open(path) as src:
            shape, transform = (src.height, src.width), src.transform
    except rasterio.errors.RasterioError as exc:
        raise unreadable_raster(path, exc) from exc
    if shape != raster.shape or not transform.almost_equals(raster.transform):
        raise SceneError(
            f"{path}: the {what} raster's grid ({shape[0]}x{shape[1]}, "
            f"{tuple(transform)[:6]}) differs from the class raster's ({raster.shape[0]}x"
            f"{raster.shape[1]}, {tuple(raster.transform)[:6]}); pass the {what}.tif of the "
            "same prediction"
        )


def sieve_threshold_px(min_area_m2: float, pixel_m2: float) -> int:
    """Pixels a region needs to survive ``min_area_m2``: ceil(min_area / pixel area)."""
    if min_area_m2 <= 0 or pixel_m2 <= 0:
        return 0
    return max(0, math.ceil(min_area_m2 / pixel_m2 - 1e-9))


def _class_styles(classes: Sequence[ClassInfo], present: np.ndarray) -> tuple[ClassInfo, ...]:
    """The class list plus a grey ``class <id>`` entry for each unlisted value present."""
    known = {c.id for c in classes}
    extra = tuple(
        ClassInfo(int(v), f"class {int(v)}", UNKNOWN_CLASS_COLOR)
        for v in np.unique(present)
        if int(v) not in known
    )
    return (*classes, *extra)


class _Tally:
    """Polygons and area per class value, added up as batches are written."""

    def __init__(self) -> None:
        self.count = np.zeros(256, dtype=np.int64)
        self.area = np.zeros(256, dtype=np.float64)

    def add(self, features: FeatureBatch) -> None:
        self.count += np.bincount(features.class_id, minlength=256)
        self.area += np.bincount(features.class_id, weights=features.area_m2, minlength=256)

    @property
    def present(self) -> np.ndarray:
        return np.flatnonzero(self.count)

    def result(
        self, path: Path, styles: Sequence[ClassInfo], *, blocks: int, dask_workers: int
    ) -> VectorizeResult:
        """What was written: per class (every one of ``styles``) polygons, area and name."""
        return VectorizeResult(
            path=path,
            n_polygons=int(self.count.sum()),
            polygons_per_class={c.id: int(self.count[c.id]) for c in styles},
            area_m2_per_class={c.id: float(self.area[c.id]) for c in styles},
            blocks=blocks,
            dask_workers=dask_workers,
            class_names={c.id: c.name for c in styles},
        )


class _FeatureSink:
    """Finished regions -> layer rows (class names, extra columns), written in few batches.

    Batches from blocks are small; each GeoPackage append has a fixed cost and updates the
    spatial index row by row, so rows are buffered up to `WRITE_BATCH_FEATURES` (bounded
    memory) and written together. The first write creates the layer.
    """

    def __init__(
        self,
        writer: PolygonLayerWriter,
        names: np.ndarray,
        extra: Mapping[str, str],
        tally: _Tally,
        source_names: np.ndarray | None = None,
    ) -> None:
        self._source_names = source_names  # index -1 (no source pixel) is the last: NULL
        self._writer = writer
        self._names = names
        self._extra = extra
        self._tally = tally
        self._buffer: list[FeatureBatch] = []
        self._buffered = 0
        self._written = False

    def __call__(self, features: FeatureBatch) -> None:
        self._tally.add(features)
        if len(features):
            self._buffer.append(features)
            self._buffered += len(features)
        if self._buffered >= WRITE_BATCH_FEATURES:
            self.flush()

    def flush(self, *, final: bool = False) -> None:
        if not self._buffer and (self._written or not final):
            return
        features = FeatureBatch.concat(self._buffer) if self._buffer else FeatureBatch.empty()
        columns: dict[str, np.ndarray] = {
            "class_id": features.class_id,
            "class_name": self._names[features.class_id],
            "pixel_count": features.pixel_count,
            "area_m2": features.area_m2,
            "perimeter_m": features.perimeter_m,
            "mean_confidence": features.mean_confidence,
        }
        if self._source_names is not None:
            columns["source"] = self._source_names[features.source]
        for name, value in self._extra.items():
            columns[name] = np.full(len(features), str(value), dtype=object)
        self._writer.write_wkb(features.wkb, columns)
        self._buffer, self._buffered, self._written = [], 0, True


def _checked_connectivity(connectivity: int) -> Connectivity:
    if connectivity not in (Connectivity.FOUR, Connectivity.EIGHT):
        raise ConfigError(
            f"{option('connectivity')}: {connectivity} is not 4 or 8; give 4 (edges, "
            "gdal_polygonize's "
            "default) or 8 (edges and corners, its -8)"
        )
    return Connectivity(connectivity)


def _checked_extra(extra_attributes: Mapping[str, str] | None) -> dict[str, str]:
    extra = dict(extra_attributes or {})
    clashes = sorted(set(extra) & set(BUILTIN_FIELDS))
    if clashes:
        raise ConfigError(
            f"extra attributes {clashes} would replace built-in columns; rename them "
            f"(built-in: {', '.join(BUILTIN_FIELDS)})"
        )
    return extra


def _block_job(
    classes_path: Path,
    confidence_path: str | os.PathLike[str] | None,
    connectivity: Connectivity,
    options: VectorizeOptions,
    sources: SourceRaster | None = None,
) -> BlockJob:
    """The job of every block task, after checking the rasters (sizes in pixels)."""
    raster = _inspect_class_raster(classes_path)
    if confidence_path is not None:
        _check_same_grid(Path(confidence_path), raster, "confidence")
    if sources is not None:
        _check_same_grid(sources.path, raster, "source")
    pixel_m2 = raster.pixel_area_m2
    return BlockJob(
        classes_path=str(classes_path.resolve()),
        confidence_path=None if confidence_path is None else str(Path(confidence_path).resolve()),
        height_px=raster.shape[0],
        width_px=raster.shape[1],
        transform=raster.transform,
        crs_wkt=pyproj.CRS.from_wkt(raster.crs.to_wkt()).to_wkt(),
        connectivity=connectivity,
        block_px=options.block_size_px,
        sieve_px=sieve_threshold_px(options.min_area_m2, pixel_m2),
        simplify_px=options.simplify_m / math.sqrt(pixel_m2) if options.simplify_m else 0.0,
        source_path=None if sources is None else str(sources.path.resolve()),
        n_sources=0 if sources is None else len(sources.names),
    )


@dataclass(frozen=True)
class SourceRaster:
    """A raster of source indices beside a class raster (a mosaic's source.tif) and the name
    of each index; each polygon gets the name of the index most of its pixels have."""

    path: Path
    names: tuple[str, ...]


def _class_names(classes: Sequence[ClassInfo]) -> np.ndarray:
    """The name of every class value 0..255: listed classes by name, others ``class <id>``."""
    names = np.array([f"class {i}" for i in range(256)], dtype=object)
    for c in classes:
        names[c.id] = c.name
    return names


def vectorize_raster(
    classes_path: str | os.PathLike[str],
    out_path: str | os.PathLike[str],
    *,
    classes: Sequence[ClassInfo],
    confidence_path: str | os.PathLike[str] | None = None,
    connectivity: Connectivity = Connectivity.FOUR,
    extra_attributes: Mapping[str, str] | None = None,
    layer: str = "landcover",
    options: VectorizeOptions | None = None,
    client: Client | SharedClient | None = None,
    on_block: Callable[[int, int], None] | None = None,
    sources: SourceRaster | None = None,
) -> VectorizeResult:
    """Polygonize a class raster into a styled GeoPackage layer (+ ``.qml`` beside it).

    Columns: class_id, class_name, pixel_count, area_m2, perimeter_m, mean_confidence (0..100,
    NULL without a confidence raster), with ``sources`` a ``source`` column (the name of the
    source most of the polygon's pixels came from, `SourceRaster`), and each of
    ``extra_attributes`` as a constant string column (e.g. scene, model_sha256). Class
    values missing from ``classes`` are kept and named ``class <id>`` (``classes`` may be
    empty). The polygons are exactly those of one
    single pass (gdal_polygonize), whatever the block size; regions inside a block come first,
    block by block as they finish, then the regions merged across seams.

    ``options`` sets block size, Dask workers or scheduler, sieve and simplification (see
    `VectorizeOptions`); ``client`` runs the blocks on an existing dask.distributed client
    instead, or on a `SharedClient` (started on first need, reused across calls). A raster
    that fits in one block is processed in this process without Dask.
    ``on_block(done, total)`` is called as blocks finish (for progress bars).
    """
    options = options or VectorizeOptions()
    connectivity = _checked_connectivity(connectivity)
    classes = validate_classes(classes) if len(classes) else ()
    extra = _checked_extra(extra_attributes)
    if sources is not None and "source" in extra:
        raise ConfigError(
            "extra attribute 'source' would replace the column of the sources; rename the "
            "attribute or leave out the source raster"
        )
    job = _block_job(Path(classes_path), confidence_path, connectivity, options, sources)
    grid = BlockGrid(job.height_px, job.width_px, options.block_size_px)
    tally = _Tally()
    # One layer type per connectivity, whatever the data: corner-joined 8-connected regions
    # are MultiPolygons, so every 8-connected feature is written as one.
    geometry_type = (
        LayerGeometry.MULTIPOLYGON if connectivity == Connectivity.EIGHT else LayerGeometry.POLYGON
    )
    with PolygonLayerWriter(
        out_path, crs=job.crs_wkt, geometry_type=geometry_type, layer=layer
    ) as writer:
        source_names = None if sources is None else np.array([*sources.names, None], object)
        sink = _FeatureSink(writer, _class_names(classes), extra, tally, source_names)
        with executor_for(grid, options, client) as (executor, n_workers):
            run_blocks(
                job,
                grid,
                executor,
                sink,
                on_block=on_block or (lambda done, total: None),
                parallelism=n_workers,
            )
        sink.flush(final=True)
        styles = _class_styles(classes, tally.present)
        path = writer.commit(styles)
    return tally.result(path, styles, blocks=len(grid), dask_workers=n_workers)


def vectorize_file(
    classes_path: str | os.PathLike[str],
    out_path: str | os.PathLike[str],
    *,
    confidence_path: str | os.PathLike[str] | None = None,
    model_path: str | os.PathLike[str] | None = None,
    connectivity: int = Connectivity.FOUR,
    options: VectorizeOptions | None = None,
    client: Client | SharedClient | None = None,
    on_block: Callable[[int, int], None] | None = None,
) -> VectorizeResult:
    """`geoseg vectorize`: any class raster to a styled GeoPackage.

    Classes (names, colours) come from the model package if given -- which also adds a
    ``model_sha256`` column -- else from the raster itself (`classes_for_raster`). A
    ``scene`` column holds `raster_scene_name`.
    """
    extra = {"scene": raster_scene_name(classes_path)}
    if model_path is not None:
        from geoseg.models.package import load_package

        package = load_package(model_path)
        classes: Sequence[ClassInfo] = package.metadata.class_infos()
        extra["model_sha256"] = package.sha256
    else:
        classes = classes_for_raster(classes_path)
    return vectorize_raster(
        classes_path,
        out_path,
        classes=classes,
        confidence_path=confidence_path,
        connectivity=connectivity,
        extra_attributes=extra,
        options=options,
        client=client,
        on_block=on_block,
    )
