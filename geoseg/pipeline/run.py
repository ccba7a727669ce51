"""`geoseg run` as a library function: plan the scenes, predict, write COGs, vectorize, report.

Validation comes first (AOI, model package, every scene against the package, output folder),
so bad input fails before any output exists. Each scene is written into a hidden temp folder
and renamed to ``OUT/<scene>/`` only when all its files are complete; ``run.json`` is written
last, the same way.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from datetime import UTC, datetime
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import TYPE_CHECKING, Any

from shapely.geometry.base import BaseGeometry

from geoseg.config import RunSettings, resolve_predict_settings, vectorize_options
from geoseg.errors import ConfigError, option
from geoseg.geo.grid import TileGrid
from geoseg.geo.scene import SceneGrid
from geoseg.inference.device import resolve_device
from geoseg.inference.predictor import Predictor
from geoseg.inference.scene import SceneWindow, predict_scene
from geoseg.inference.settings import PredictSettings, PredictStats
from geoseg.io.aoi import aoi_in_crs, read_aoi
from geoseg.io.outputs import (
    CLASSES_NAME,
    CONFIDENCE_NAME,
    POLYGONS_NAME,
    PREVIEW_NAME,
    write_class_cogs,
)
from geoseg.io.staging import staged_folder
from geoseg.models.package import ModelPackage
from geoseg.mosaic import MosaicSource, mosaic_crs, mosaic_grid, write_mosaic
from geoseg.mosaic.grid import grid_phase
from geoseg.pipeline.plan import check_inputs, prepare_output_dir, widen_for_mosaic
from geoseg.pipeline.record import (
    RunReport,
    SceneResult,
    resolved_prediction,
    scene_result,
    write_run_json,
)
from geoseg.progress import NoProgress, Progress
from geoseg.render.preview import write_preview
from geoseg.sources.gdal_env import gdal_remote_env
from geoseg.vectorize import (
    Connectivity,
    SharedClient,
    VectorizeOptions,
    VectorizeResult,
    vectorize_raster,
    wants_cluster,
)

if TYPE_CHECKING:
    from distributed import Client


def make_predictor(
    settings: RunSettings, packages: Sequence[ModelPackage]
) -> tuple[Predictor, PredictSettings]:
    """The models on their device and the resolved tile/overlap/batch settings of a run."""
    package = packages[0]
    predict_settings = resolve_predict_settings(settings, package)  # tile/overlap checked
    predictor = Predictor(
        packages,
        resolve_device(settings.device),
        tta=settings.tta,
        precision=settings.precision,
        compile_model=settings.compile,
    )
    predictor.check_tile_size(predict_settings.tile_px)
    if settings.batch_size is None:
        filled = predictor.fill_device_batch_size(
            predict_settings.tile_px, len(package.metadata.bands)
        )
        if filled is not None:
            predict_settings = dataclasses.replace(predict_settings, batch_size=filled)
    return predictor, predict_settings


def run(settings: RunSettings, progress: Progress | None = None) -> RunReport:
    """Run the whole pipeline for an AOI; see the module docstring for the guarantees."""
    t0 = time.perf_counter()
    progress = progress or NoProgress()
    with ExitStack() as stack:
        inputs_dir = Path(stack.enter_context(TemporaryDirectory(prefix="geoseg-inputs-")))
        stack.enter_context(gdal_remote_env(settings.scenes, searched=settings.stac is not None))
        packages, planned = check_inputs(settings, inputs_dir)
        mosaic, planned = plan_with_mosaic(settings, packages[0], planned)
        stack.enter_context(gdal_remote_env(remote_hrefs(planned)))
        return _run_planned(settings, packages, planned, progress, t0, mosaic_plan=mosaic)


def remote_hrefs(planned: Sequence[tuple[str, SceneWindow]]) -> list[str]:
    """The band and mask hrefs the planned scenes read (for the GDAL remote settings)."""
    return [h for _, target in planned for h in target.hrefs]


def _run_planned(
    settings: RunSettings,
    packages: list[ModelPackage],
    planned: list[tuple[str, SceneWindow]],
    progress: Progress,
    t0: float,
    *,
    mosaic_plan: MosaicPlan | None = None,
) -> RunReport:
    """Predict, vectorize (and mosaic) the planned scenes; record them (inputs checked)."""
    predictor, predict_settings = make_predictor(settings, packages)
    connectivity = Connectivity(settings.connectivity)
    prepare_output_dir(settings.out)

    vectorize = vectorize_options(settings)
    on_dask = [wants_cluster(vectorize, *target.window.shape) for _, target in planned]
    mosaic_on_dask = mosaic_plan is not None and wants_cluster(vectorize, *mosaic_plan.grid.shape)
    # one Dask cluster for all scenes, only if a class raster is worth one (`wants_cluster`),
    # started in the background so that it is up when the first class raster is
    with SharedClient(workers=vectorize.workers, address=vectorize.dask_address) as shared:
        if any(on_dask) or mosaic_on_dask:
            shared.start_soon()
        results = [
            run_scene(
                name,
                target,
                predictor=predictor,
                settings=predict_settings,
                out=settings.out,
                connectivity=connectivity,
                progress=progress,
                vectorize=vectorize,
                client=shared if dask else None,
            )
            for (name, target), dask in zip(planned, on_dask, strict=True)
        ]
        mosaic = None
        if mosaic_plan is not None:
            mosaic = run_mosaic(
                settings,
                mosaic_plan,
                results,
                packages,
                vectorize=vectorize,
                client=shared if mosaic_on_dask else None,
                progress=progress,
            )
    seconds = time.perf_counter() - t0
    run_json = write_run_json(
        settings,
        packages=packages,
        resolved=resolved_prediction(predictor, predict_settings),
        results=results,
        seconds=seconds,
        mosaic=mosaic,
    )
    return RunReport(settings.out, results, run_json, seconds, mosaic=mosaic)


def run_scene(
    name: str,
    target: SceneWindow,
    *,
    predictor: Predictor,
    settings: PredictSettings,
    out: Path,
    connectivity: Connectivity,
    progress: Progress,
    vectorize: VectorizeOptions | None = None,
    client: SharedClient | None = None,
) -> SceneResult:
    """Predict, convert to COGs and vectorize one scene into ``out/<name>/`` atomically.

    The polygons are traced from the raw class and confidence rasters while the COGs and the
    preview are written from the same files in another thread (GDAL compresses without the
    GIL), so the two stages overlap instead of following each other.
    """
    final_dir = out / name
    try:
        with staged_folder(final_dir) as folder:
            stats, timings, raw = predict_raw(
                name,
                target,
                predictor=predictor,
                settings=settings,
                folder=folder,
                progress=progress,
            )
            progress.stage(name, "writing COGs and vectorizing")
            with ThreadPoolExecutor(1, thread_name_prefix="geoseg-cog") as pool:
                cogs = pool.submit(write_rasters, name, target, raw, predictor.package, folder)
                vec, timings["vectorize"] = vectorize_folder(
                    name,
                    folder,
                    packages=predictor.packages,
                    connectivity=connectivity,
                    progress=progress,
                    vectorize=vectorize,
                    client=client,
                    rasters=raw,
                )
                timings["cog"] = cogs.result()
            for path in raw:
                path.unlink()
    finally:
        progress.scene_finished(name)
    return scene_result(
        name, target, final_dir=final_dir, stats=stats, polygons=vec.n_polygons, timings=timings
    )


def predict_to_folder(
    name: str,
    target: SceneWindow,
    *,
    predictor: Predictor,
    settings: PredictSettings,
    folder: Path,
    progress: Progress,
) -> tuple[PredictStats, dict[str, float]]:
    """Predict one scene into ``folder``: classes/confidence COGs, classes.qml, preview.png.

    Returns the prediction figures and the seconds of each step (predict, model, cog).
    """
    stats, timings, raw = predict_raw(
        name, target, predictor=predictor, settings=settings, folder=folder, progress=progress
    )
    progress.stage(name, "writing COGs")
    timings["cog"] = write_rasters(name, target, raw, predictor.package, folder)
    for path in raw:
        path.unlink()
    return stats, timings


def predict_raw(
    name: str,
    target: SceneWindow,
    *,
    predictor: Predictor,
    settings: PredictSettings,
    folder: Path,
    progress: Progress,
) -> tuple[PredictStats, dict[str, float], tuple[Path, Path]]:
    """Predict one scene into raw (tiled, not yet COG) class and confidence rasters.

    Returns the prediction figures, the seconds of predict and model, and the two paths.
    """
    grid = TileGrid.build(
        target.window, target.scene.grid.shape, settings.tile_px, settings.overlap_px
    )
    progress.scene_started(name, len(grid), target.window.size_px)
    raw = (folder / "classes.raw.tif", folder / "confidence.raw.tif")
    stats = predict_scene(
        target,
        predictor,
        settings,
        classes_path=raw[0],
        confidence_path=raw[1],
        on_tiles=lambda n: progress.tiles_done(name, n),
        grid=grid,
    )
    return stats, {"predict": stats.seconds, "model": stats.model_seconds}, raw


def write_rasters(
    name: str, target: SceneWindow, raw: tuple[Path, Path], package: ModelPackage, folder: Path
) -> float:
    """The COGs (classes, confidence), classes.qml and preview.png from the raw rasters.

    Leaves the raw files in place (the vectorizer may still read them); returns the seconds.
    """
    t = time.perf_counter()
    classes = package.metadata.class_infos()
    write_class_cogs(raw, folder, classes)
    write_preview(folder / CLASSES_NAME, folder / PREVIEW_NAME, aoi=target.aoi, title=name)
    return time.perf_counter() - t


def vectorize_folder(
    name: str,
    folder: Path,
    *,
    packages: Sequence[ModelPackage],
    connectivity: Connectivity,
    progress: Progress,
    vectorize: VectorizeOptions | None = None,
    client: Client | SharedClient | None = None,
    rasters: tuple[Path, Path] | None = None,
) -> tuple[VectorizeResult, float]:
    """Polygonize ``folder``'s classes.tif (with its confidence) into polygons.gpkg.

    ``client``: run the blocks on this Dask client (or a run's `SharedClient`) instead of
    a cluster of its own. ``rasters``: read these (class, confidence) files instead, the same
    pixels before their COG conversion. Returns the result and its seconds.
    """
    if rasters is None:
        progress.stage(name, "vectorizing")
    classes_path, confidence_path = rasters or (folder / CLASSES_NAME, folder / CONFIDENCE_NAME)
    t = time.perf_counter()
    vec = vectorize_raster(
        classes_path,
        folder / POLYGONS_NAME,
        classes=packages[0].metadata.class_infos(),
        confidence_path=confidence_path,
        connectivity=connectivity,
        extra_attributes={
            "scene": name,
            "model_sha256": "+".join(p.sha256 for p in packages),
        },
        options=vectorize,
        client=client,
    )
    return vec, time.perf_counter() - t


@dataclasses.dataclass(frozen=True)
class MosaicPlan:
    """Where the mosaic of a run lies and the AOI in its CRS."""

    grid: SceneGrid
    aoi: BaseGeometry


def plan_mosaic(
    settings: RunSettings,
    package: ModelPackage,
    scenes: Sequence[SceneGrid] = (),
    *,
    phase: tuple[float, float] | None = None,
) -> MosaicPlan | None:
    """With ``settings.mosaic``: the mosaic's grid and the AOI in its CRS, checked before
    any work (a geographic ``--crs`` is refused here). Its pixel lines are those of the
    scenes' output grids ``scenes`` already in its CRS (`grid_phase`), or ``phase``."""
    if not settings.mosaic:
        if settings.crs is not None or settings.prefer != "confidence":
            given = option("crs" if settings.crs is not None else "prefer")
            raise ConfigError(
                f"{given} only applies to the AOI mosaic: add {option('mosaic')} (or drop {given})"
            )
        return None
    aoi = read_aoi(settings.aoi, layer=settings.aoi_layer)
    crs = mosaic_crs(aoi, settings.crs)
    geometry = aoi_in_crs(aoi, crs)
    gsd = package.metadata.gsd_m
    if phase is None:
        phase = grid_phase(scenes, crs, gsd)
    return MosaicPlan(mosaic_grid(geometry, crs, gsd, phase), geometry)


def plan_with_mosaic(
    settings: RunSettings, package: ModelPackage, planned: Sequence[tuple[str, SceneWindow]]
) -> tuple[MosaicPlan | None, list[tuple[str, SceneWindow]]]:
    """The run's `plan_mosaic` (on the planned scenes' pixel lines) and the scenes planned
    as the mosaic needs them (`widen_for_mosaic`); without a mosaic, the scenes as planned."""
    mosaic = plan_mosaic(settings, package, [target.grid for _, target in planned])
    if mosaic is None:
        return None, list(planned)
    return mosaic, widen_for_mosaic(planned, mosaic.grid)


def scene_date(result: SceneResult) -> str | None:
    """When a scene was taken: its STAC datetime, else a local raster's modification time."""
    if result.input.get("datetime"):
        return str(result.input["datetime"])
    path = Path(result.path)
    if result.input.get("kind") != "stac-item" and path.is_file():
        return datetime.fromtimestamp(path.stat().st_mtime, tz=UTC).isoformat()
    return None


def mosaic_sources(results: Sequence[SceneResult]) -> list[MosaicSource]:
    """The published scenes as mosaic sources, in run order (their index in source.tif)."""
    return [
        MosaicSource(
            name=r.scene,
            classes=Path(r.outputs["classes"]),
            confidence=Path(r.outputs["confidence"]),
            datetime=scene_date(r),
            item=r.input.get("item"),
        )
        for r in results
    ]


def run_mosaic(
    settings: RunSettings,
    plan: MosaicPlan,
    results: Sequence[SceneResult],
    packages: Sequence[ModelPackage],
    *,
    vectorize: VectorizeOptions | None = None,
    client: SharedClient | None = None,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """``OUT/mosaic/`` from the published scenes; its run.json record."""
    return write_mosaic(
        settings.out,
        mosaic_sources(results),
        plan.grid,
        plan.aoi,
        classes=packages[0].metadata.class_infos(),
        prefer=settings.prefer,
        connectivity=Connectivity(settings.connectivity),
        vectorize=vectorize,
        client=client,
        extra_attributes={"model_sha256": "+".join(p.sha256 for p in packages)},
        progress=progress,
    )
