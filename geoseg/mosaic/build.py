"""``OUT/mosaic/``: the scenes' class and confidence rasters merged onto one grid, streamed.

Row band by row band of the mosaic grid, each scene whose footprint reaches the band is read
onto the mosaic grid (`geoseg.mosaic.place`: directly when it lies on the mosaic's pixel
lines, else through a GDAL warped view), nearest neighbour for classes *and* confidence: a
mosaic pixel's class and confidence come from the same scene pixel, and the choice compares
confidences that pixels really had (bilinear would blend a pixel's confidence with its
neighbours', of other classes or of nodata). Scenes are offered one at a time to the band's
`BandChoice`, which keeps the winner per pixel. Memory follows the band (rows x mosaic width),
never a scene's or the mosaic's area nor the number of scenes.
The class raster is then vectorized by the block-wise vectorizer with a ``source`` column, so
polygons run whole across scene borders.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from shapely.geometry.base import BaseGeometry

from geoseg.classes import CLASS_NODATA, ClassInfo
from geoseg.errors import ConfigError, ModelPackageError
from geoseg.geo.scene import SceneGrid
from geoseg.geo.window import PixelWindow
from geoseg.io.aoi import aoi_mask
from geoseg.io.outputs import (
    CLASSES_NAME,
    POLYGONS_NAME,
    PREVIEW_NAME,
    classes_for_raster,
    classes_tags,
    write_class_cogs,
)
from geoseg.io.raster import RowBandWriter, write_cog
from geoseg.io.staging import staged_folder
from geoseg.mosaic.choose import SOURCE_NODATA, BandChoice
from geoseg.mosaic.place import SceneReader
from geoseg.progress import NoProgress, Progress
from geoseg.render.preview import write_preview
from geoseg.vectorize import (
    Connectivity,
    SharedClient,
    SourceRaster,
    VectorizeOptions,
    vectorize_raster,
)

log = logging.getLogger(__name__)

MOSAIC_DIR = "mosaic"
PREFER = ("confidence", "newest")
"""``--prefer`` choices: the highest confidence, or the newest scene."""
SOURCE_NAME = "source.tif"
BAND_ROWS = 512
"""Mosaic rows merged at a time (memory: about 10 bytes x BAND_ROWS x mosaic width, plus one
scene's footprint columns at a time, whatever the number of scenes)."""


@dataclass(frozen=True)
class MosaicSource:
    """One scene's published outputs and when it was taken (ISO datetime or None)."""

    name: str
    classes: Path
    confidence: Path
    datetime: str | None = None
    item: str | None = None


def check_mosaic_inputs(
    sources: Sequence[MosaicSource], classes: Sequence[ClassInfo], prefer: str
) -> None:
    """Refuse what the mosaic cannot represent before writing anything."""
    if prefer not in PREFER:
        raise ConfigError(f"--prefer {prefer}: not a choice; use one of {', '.join(PREFER)}")
    if not sources:
        raise ConfigError("--mosaic: no scene was mapped, so there is nothing to merge")
    if len(sources) >= SOURCE_NODATA:
        raise ConfigError(
            f"--mosaic: {len(sources)} scenes, but source.tif numbers at most "
            f"{SOURCE_NODATA - 1}; map a smaller AOI or fewer scenes (--limit, --datetime)"
        )
    check_source_classes(sources, classes)


def check_source_classes(sources: Sequence[MosaicSource], classes: Sequence[ClassInfo]) -> None:
    """Refuse scenes whose class rasters name other classes than the run's model."""
    wanted = [(c.id, c.name) for c in classes]
    for s in sources:
        found = [(c.id, c.name) for c in classes_for_raster(s.classes)]
        if found and found != wanted:
            raise ModelPackageError(
                f"{s.classes}: scene {s.name} was predicted with other classes ({found}) than "
                f"the mosaic's model ({wanted}); mosaic only scenes of one model"
            )


def scene_time(text: str | None) -> datetime | None:
    """An ISO 8601 / RFC 3339 time (``Z`` or an offset; none is taken as UTC), or None."""
    try:
        stamp = datetime.fromisoformat((text or "").replace("Z", "+00:00"))
    except ValueError:
        return None
    return stamp if stamp.tzinfo else stamp.replace(tzinfo=UTC)  # naive and aware do not compare


def date_ranks(sources: Sequence[MosaicSource]) -> np.ndarray | None:
    """Per scene an integer growing with its date (equal dates, equal ranks); None, with one
    warning line, when a scene has no date (the choice then falls back to confidence)."""
    stamps = [scene_time(s.datetime) for s in sources]
    undated = [s.name for s, t in zip(sources, stamps, strict=True) if t is None]
    if undated:
        log.warning(
            "--prefer newest: scene(s) %s have no acquisition date (a STAC datetime or a local "
            "file's time); choosing by confidence instead",
            ", ".join(undated),
        )
        return None
    seconds = np.array([t.timestamp() for t in stamps if t is not None])
    return np.unique(seconds, return_inverse=True)[1].astype(np.int64)


def merge_band(
    readers: Sequence[SceneReader], rows: tuple[int, int], width: int, rank: np.ndarray | None
) -> BandChoice:
    """The choice over mosaic ``rows`` among the scenes reaching them, offered in run order;
    a scene's files are closed after its last band."""
    choice = BandChoice.empty((rows[1] - rows[0], width))
    for i, reader in enumerate(readers):
        placement = reader.placement
        if not placement.reaches(*rows):
            continue
        classes, confidence = reader.read(rows)
        scene_rank = None if rank is None else int(rank[i])
        choice.offer(classes, confidence, i, rank=scene_rank, cols=placement.cols)
        if placement.rows[1] <= rows[1]:
            reader.close()
    return choice


def merge_rasters(
    sources: Sequence[MosaicSource],
    grid: SceneGrid,
    aoi: BaseGeometry,
    folder: Path,
    *,
    classes: Sequence[ClassInfo],
    rank: np.ndarray | None,
    band_rows: int = BAND_ROWS,
    on_band: Callable[[], None] = lambda: None,
) -> tuple[Path, Path, Path, dict[str, Any]]:
    """Raw (tiled) class, confidence and source rasters of the mosaic in ``folder``.

    Returns the three paths and the figures: pixels per class, pixels per source, pixels in
    the AOI and those of them without any valid scene pixel.
    """
    paths = (folder / "classes.raw.tif", folder / "confidence.raw.tif", folder / "source.raw.tif")
    class_px = np.zeros(256, dtype=np.int64)
    source_px = np.zeros(len(sources), dtype=np.int64)
    aoi_px = uncovered_px = 0
    with ExitStack() as stack:
        readers = [SceneReader(s.classes, s.confidence, grid) for s in sources]
        stack.callback(lambda: [r.close() for r in readers])
        tags = classes_tags(classes)
        out_c = stack.enter_context(
            RowBandWriter(paths[0], grid, nodata=CLASS_NODATA, classes=classes, tags=tags)
        )
        out_f = stack.enter_context(RowBandWriter(paths[1], grid, nodata=None))
        out_s = stack.enter_context(
            RowBandWriter(
                paths[2], grid, nodata=SOURCE_NODATA, dtype="uint16", tags=source_tags(sources)
            )
        )
        for r0 in range(0, grid.height, band_rows):
            h = min(band_rows, grid.height - r0)
            choice = merge_band(readers, (r0, r0 + h), grid.width, rank)
            cls, conf, src = choice.classes, choice.confidence, choice.source
            inside = aoi_mask(
                aoi, grid.window_transform(PixelWindow(r0, 0, h, grid.width)), cls.shape
            )
            cls[~inside], conf[~inside], src[~inside] = CLASS_NODATA, 0, SOURCE_NODATA
            out_c.write_rows(r0, cls)
            out_f.write_rows(r0, conf)
            out_s.write_rows(r0, src)
            class_px += np.bincount(cls.ravel(), minlength=256)
            source_px += np.bincount(src[src != SOURCE_NODATA], minlength=len(sources))
            aoi_px += int(inside.sum())
            uncovered_px += int((inside & (cls == CLASS_NODATA)).sum())
            on_band()
    figures = {
        "class_px": {str(c.id): int(class_px[c.id]) for c in classes},
        "source_px": {s.name: int(n) for s, n in zip(sources, source_px, strict=True)},
        "aoi_px": aoi_px,
        "nodata_in_aoi_px": uncovered_px,
    }
    return *paths, figures


def source_table(sources: Sequence[MosaicSource]) -> list[dict[str, Any]]:
    """What each ``source.tif`` value means: index, scene, STAC item and datetime."""
    return [
        {"index": i, "scene": s.name, "item": s.item, "datetime": s.datetime}
        for i, s in enumerate(sources)
    ]


def source_tags(sources: Sequence[MosaicSource]) -> dict[str, str]:
    """The `source_table` as GeoTIFF tags of ``source.tif``."""
    table = json.dumps(source_table(sources))
    return {"GEOSEG_SOURCES": table, "NODATA_MEANING": "no scene covers the pixel"}


def write_rasters(
    folder: Path, raw: tuple[Path, Path, Path], *, classes: Sequence[ClassInfo], aoi: BaseGeometry
) -> None:
    """The raw class, confidence and source rasters as COGs (mode, average and nearest
    overviews), with class names, the QGIS style and the preview; the raw files removed."""
    write_class_cogs(raw[:2], folder, classes)
    write_cog(raw[2], folder / SOURCE_NAME, resampling="nearest")
    write_preview(folder / CLASSES_NAME, folder / PREVIEW_NAME, aoi=aoi, title="mosaic")
    for path in raw:
        path.unlink()


def write_mosaic(
    out: Path,
    sources: Sequence[MosaicSource],
    grid: SceneGrid,
    aoi: BaseGeometry,
    *,
    classes: Sequence[ClassInfo],
    prefer: str = "confidence",
    connectivity: Connectivity = Connectivity.FOUR,
    vectorize: VectorizeOptions | None = None,
    client: SharedClient | None = None,
    extra_attributes: dict[str, str] | None = None,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Write ``out/mosaic/`` (classes, confidence, source COGs, styles, polygons, preview)
    atomically; return its run.json record.

    ``prefer``: ``confidence`` or ``newest`` (`date_ranks`; falls back to confidence).
    ``progress`` hears of it as the "mosaic" scene, one tile per merged row band.
    """
    check_mosaic_inputs(sources, classes, prefer)
    rank = date_ranks(sources) if prefer == "newest" else None
    progress = progress or NoProgress()
    t0 = time.perf_counter()
    final = out / MOSAIC_DIR
    out.mkdir(parents=True, exist_ok=True)
    progress.scene_started(MOSAIC_DIR, -(-grid.height // BAND_ROWS), grid.height * grid.width)
    try:
        with staged_folder(final) as folder:
            progress.stage(MOSAIC_DIR, f"merging {len(sources)} scene(s)")
            raw_c, raw_f, raw_s, figures = merge_rasters(
                sources, grid, aoi, folder, classes=classes, rank=rank,
                on_band=lambda: progress.tiles_done(MOSAIC_DIR, 1),
            )  # fmt: skip
            t_merge = time.perf_counter() - t0
            progress.stage(MOSAIC_DIR, "vectorizing and writing COGs")
            vec = vectorize_raster(
                raw_c,
                folder / POLYGONS_NAME,
                classes=classes,
                confidence_path=raw_f,
                connectivity=connectivity,
                extra_attributes=extra_attributes,
                options=vectorize,
                client=client,
                sources=SourceRaster(raw_s, tuple(s.name for s in sources)),
            )
            t_vec = time.perf_counter() - t0 - t_merge
            write_rasters(folder, (raw_c, raw_f, raw_s), classes=classes, aoi=aoi)
    finally:
        progress.scene_finished(MOSAIC_DIR)
    return {
        "path": str(final),
        "crs": grid.crs.to_string(),
        "transform": list(grid.transform)[:6],
        "shape": list(grid.shape),
        "prefer": "newest" if rank is not None else "confidence",
        "resampling": "nearest (classes, confidence and source from one scene pixel)",
        "sources": source_table(sources),
        **figures,
        "polygons": vec.n_polygons,
        "timings_s": {
            "merge": round(t_merge, 3),
            "vectorize": round(t_vec, 3),
            "cog": round(time.perf_counter() - t0 - t_merge - t_vec, 3),
        },
    }
