"""Prefect tasks of the geoseg flows: each does one job on paths and calls geoseg library code.

`select_scenes` resolves the scene inputs as `geoseg run` does (`geoseg.pipeline.plan.
check_inputs`: files, folders, globs, STAC item files and URLs, remote rasters, a STAC API
search) and checks them all in the flow's process. Scenes read through a VRT (STAC items,
remote rasters, other pixel sizes) get it written under ``OUT/.geoseg-inputs/`` once every
input passed, so the scene tasks on Dask workers -- other processes, other machines on a
shared filesystem -- open the same file; each `SceneJob` carries the VRT or file, its read
plan, input record and band hrefs, and the scene tasks set GDAL's remote-read settings
(`gdal_remote_env`) around their reads.

Per scene the work is three cached tasks, predict -> vectorize -> publish, chained through
small records (`flows.jobs`: `PredictedScene`, `VectorizedScene`) of paths and numbers.
Their cache key is the scene's `SceneJob.key` (`flows.jobs.scene_key`): a hash of the scene
(a file read as it is: path, size, mtime; a VRT-read scene: item id, collection, its band
files -- local ones by path, size and mtime, remote ones by the sha256 of the href --, grid
and read plan), the AOI file's content, the pixel window, the model packages' sha256 and
every setting that changes the outputs. Results are persisted under ``OUT/.geoseg-cache``
(beside the outputs, so any machine that sees the outputs sees the cache), so a rerun after a
crash -- or with a new scene in the folder, a new item in the search -- recomputes only what
is missing.

A cache entry is only trusted while its files are there: the flow looks at the disk before
submitting (`SceneJob.stage`: the key file of a published scene lists every file published
with it) and refreshes the cache of every stage whose files are gone. Every stage writes into
a temp name and renames it when complete, so the presence of a file means it is whole.

Retries: only on transient I/O errors (`is_transient_io_error`): an ``OSError`` that is not a
`GeosegError`. Bad input (a `GeosegError`) fails at once with its message.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.tasks import exponential_backoff

from flows.jobs import (
    INPUTS_DIR_NAME,
    KEY_FILE,
    PredictedScene,
    PublishedScene,
    RunPlan,
    SceneJob,
    SceneStage,
    VectorizedScene,
    read_key_file,
    remove_leftovers,
    scene_jobs,
    write_key_file,
)
from flows.naming import settings_named
from geoseg.config import (
    RunOptions,
    RunSettings,
    StacQuery,
    resolve_predict_settings,
    vectorize_options,
)
from geoseg.errors import GeosegError, StacError
from geoseg.geo.scene import SceneGrid
from geoseg.geo.window import PixelWindow
from geoseg.inference.predictor import Predictor
from geoseg.inference.scene import SceneWindow
from geoseg.inference.settings import PredictSettings
from geoseg.io.aoi import aoi_in_crs, read_aoi, widen_aoi
from geoseg.io.raster import open_scene
from geoseg.io.staging import publish_folder, staged_folder
from geoseg.models.package import ModelPackage, load_package
from geoseg.mosaic.build import MOSAIC_DIR
from geoseg.mosaic.grid import grid_phase_of
from geoseg.pipeline.plan import check_inputs, prepare_output_dir
from geoseg.pipeline.record import resolved_prediction, scene_result, write_run_json
from geoseg.pipeline.run import (
    make_predictor,
    plan_mosaic,
    plan_with_mosaic,
    predict_to_folder,
    run_mosaic,
    vectorize_folder,
)
from geoseg.sources.gdal_env import gdal_remote_env
from geoseg.sources.hrefs import redact
from geoseg.vectorize import Connectivity, VectorizeOptions

if TYPE_CHECKING:
    from prefect import Task
    from prefect.client.schemas.objects import TaskRun
    from prefect.context import TaskRunContext
    from prefect.states import State


IO_RETRIES = 3
IO_BACKOFF_S = 2.0
"""Transient I/O failures are retried 3 times, after 2, 4 and 8 seconds."""

# --------------------------------------------------------------------------- policies


def is_transient_io_error(task: Task[..., Any], task_run: TaskRun, state: State[Any]) -> bool:
    """Prefect ``retry_condition_fn``: retry I/O hiccups, never bad input.

    A `GeosegError` (a missing file, a scene that does not fit the model, ...) will fail the
    same way again, so it fails the flow run at once with its message. Other ``OSError``s and
    timeouts (a network mount or object store that dropped a read) are worth retrying.
    """
    try:
        state.result()
    except GeosegError:
        return False
    except (OSError, TimeoutError):
        return True
    except Exception:
        return False
    return False


def stage_cache_key(context: TaskRunContext, parameters: dict[str, Any]) -> str:
    """Prefect ``cache_key_fn``: the task's name and its scene's key (see `scene_key`)."""
    job: SceneJob = parameters["job"]
    return f"geoseg-{context.task.name}-{job.key}"


IO_TASK_OPTIONS: dict[str, Any] = {
    "retries": IO_RETRIES,
    "retry_delay_seconds": exponential_backoff(backoff_factor=IO_BACKOFF_S),
    "retry_condition_fn": is_transient_io_error,
}
"""Task options shared by every task that reads or writes files."""

INPUTS_DIR = INPUTS_DIR_NAME
"""Where a flow run's scene VRTs live (inside the output folder: every worker can read it)."""

FORWARDED_LOGGERS = ("geoseg.sources.search", "geoseg.pipeline.plan")
"""Library loggers whose INFO lines `select_scenes` repeats in the run log (the STAC search's
summary: items found, within the cloud limit, used; warnings about undeclared units)."""

SCENE_TASK_OPTIONS: dict[str, Any] = {
    **IO_TASK_OPTIONS,
    "cache_key_fn": stage_cache_key,
    "persist_result": True,
}
"""Options of the cached per-scene tasks (their result storage is set per run)."""


# --------------------------------------------------------------------------- helpers


@functools.lru_cache(maxsize=2)
def _predictor_for(run_json: str) -> tuple[Predictor, PredictSettings]:
    """The models of a run, loaded once per process (a Dask worker runs many scenes)."""
    run = RunSettings.model_validate_json(run_json)
    return make_predictor(run, [load_package(p) for p in run.models])


def predictor_for(run: RunSettings) -> tuple[Predictor, PredictSettings]:
    """The run's `Predictor` and resolved prediction settings, cached per process."""
    return _predictor_for(run.model_dump_json())


@functools.lru_cache(maxsize=4)
def _packages_for(models: tuple[Path, ...]) -> list[ModelPackage]:
    return [load_package(p) for p in models]


def packages_for(run: RunSettings) -> list[ModelPackage]:
    """The run's model packages (metadata and sha256; no model built), cached per process."""
    return _packages_for(tuple(run.models))


def scene_window(job: SceneJob) -> SceneWindow:
    """The job's scene, window and AOI geometry, re-read from the paths it carries, with how
    its pixels are read, its input record and band hrefs (as `check_inputs` planned it)."""
    scene = dataclasses.replace(open_scene(job.scene), label=job.label)
    geometry = aoi_in_crs(read_aoi(job.aoi, layer=job.aoi_layer), scene.grid.crs)
    geometry = widen_aoi(geometry, job.aoi_margin)
    return SceneWindow(
        scene,
        PixelWindow(*job.window),
        geometry,
        job.plan,
        dict(job.source),
        job.hrefs,
        aoi_margin=job.aoi_margin,
    )


@contextmanager
def forwarded_logs(
    names: Sequence[str], to: logging.Logger | logging.LoggerAdapter[Any]
) -> Iterator[None]:
    """Repeat the INFO-and-above records of the loggers ``names`` on ``to`` meanwhile.

    Prefect's run log captures only its own loggers (unless PREFECT_LOGGING_EXTRA_LOGGERS
    names others); this puts the library's few planning lines where the flow's user reads.
    """

    class Forward(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            to.log(record.levelno, record.getMessage())

    handler = Forward(logging.INFO)
    loggers = [logging.getLogger(n) for n in names]
    saved = [lg.level for lg in loggers]
    for lg in loggers:
        lg.addHandler(handler)
        if lg.getEffectiveLevel() > logging.INFO:
            lg.setLevel(logging.INFO)
    try:
        yield
    finally:
        for lg, level in zip(loggers, saved, strict=True):
            lg.removeHandler(handler)
            lg.setLevel(level)


def publish_vrts(written: Path, inputs_dir: Path) -> dict[Path, Path]:
    """Move the VRTs planning wrote into ``written`` to ``inputs_dir``; old path -> new path.

    Each is replaced atomically (a worker of an earlier run still reading the old one keeps a
    whole file), and their sources are absolute hrefs, so they read the same from anywhere.
    """
    moved: dict[Path, Path] = {}
    vrts = sorted(written.glob("*.vrt"))
    if vrts:
        inputs_dir.mkdir(parents=True, exist_ok=True)
    for vrt in vrts:
        final = inputs_dir / vrt.name
        tmp = inputs_dir / f".{vrt.name}.partial-{os.getpid()}"
        shutil.copyfile(vrt, tmp)
        tmp.replace(final)
        moved[vrt] = final
    return moved


def is_empty_search(exc: StacError, stac: StacQuery | None) -> bool:
    """Whether ``exc`` is the search's "no items of ... intersect the AOI" refusal."""
    return stac is not None and str(exc).startswith(f"{redact(stac.api)}: no items of ")


def dask_worker_address() -> str:
    """The address of the Dask worker running this code, "" outside a Dask worker."""
    try:
        from distributed import get_worker

        return str(get_worker().address)
    except (ImportError, ValueError):
        return ""


def on_dask_worker() -> bool:
    """Whether this code runs inside a Dask worker (a scene task on the flow's cluster)."""
    return bool(dask_worker_address())


def task_vectorize_options(run: RunSettings) -> VectorizeOptions:
    """How a scene task vectorizes: the run's options, but never a cluster of its own.

    On a Dask worker the blocks run one after another in the task (``workers=0``; memory stays
    bounded by the block size). A nested LocalCluster is impossible there (daemonic worker
    processes cannot have children). Running the blocks on the task's own cluster through
    ``distributed.worker_client()`` was tried and rejected: the waiting task secedes from
    the worker's thread pool, and with Prefect 3.9.1 + distributed 2026.8 the tasks that then
    started on the same worker were never written to the result cache (seen in the rerun
    test: their records were missing, so a rerun recomputed them; the likely cause is that
    their result transaction found the seceded task's as its parent and left the commit to
    it). Scenes run in parallel across the workers instead.
    """
    options = vectorize_options(run)
    if on_dask_worker():
        return dataclasses.replace(options, workers=0, dask_address=None)
    return options


class LogProgress:
    """`geoseg.progress.Progress` into the Prefect run log: tiles done every ~10 %."""

    def __init__(self, logger: logging.Logger | logging.LoggerAdapter[Any], steps: int = 10):
        self._logger = logger
        self._steps = steps
        self._total: dict[str, int] = {}
        self._done: dict[str, int] = {}
        self._px_per_tile: dict[str, float] = {}
        self._started: dict[str, float] = {}

    def scene_started(self, scene: str, total_tiles: int, window_px: int) -> None:
        self._total[scene], self._done[scene] = total_tiles, 0
        self._px_per_tile[scene] = window_px / max(total_tiles, 1)
        self._started[scene] = time.perf_counter()
        self._logger.info("%s: predicting %d tiles (%d px)", scene, total_tiles, window_px)

    def tiles_done(self, scene: str, n: int) -> None:
        total = self._total.get(scene, 0)
        before, after = self._done.get(scene, 0), self._done.get(scene, 0) + n
        self._done[scene] = after
        step = max(1, total // self._steps)
        if total and (after // step > before // step or after == total):
            elapsed = time.perf_counter() - self._started[scene]
            rate = after * self._px_per_tile[scene] / elapsed / 1e6 if elapsed > 0 else 0.0
            self._logger.info(
                "%s: %d/%d tiles (%.0f %%), %.2f Mpx/s",
                scene,
                after,
                total,
                100 * after / total,
                rate,
            )

    def stage(self, scene: str, stage: str) -> None:
        self._logger.info("%s: %s", scene, stage)

    def scene_finished(self, scene: str) -> None:
        pass


# --------------------------------------------------------------------------- tasks


@task(name="select-scenes", cache_policy=NO_CACHE, **IO_TASK_OPTIONS)
@settings_named
def select_scenes(
    *,
    aoi: Path,
    scenes: Sequence[str | Path],
    models: Sequence[Path],
    out: Path,
    options: RunOptions,
    newest: int | None = None,
    aoi_layer: str | None = None,
    stac: StacQuery | None = None,
    allow_no_items: bool = False,
) -> RunPlan:
    """Resolve the scene inputs, validate every input and plan the scenes the AOI touches.

    ``scenes`` are what ``geoseg run --scenes`` takes (files, folders, globs, STAC item files
    or URLs, https:// and s3:// rasters; URLs stay text) and ``stac`` its search; ``newest``
    keeps the newest N of ``scenes``, ``stac.limit`` the newest N items found. All bad input
    fails here, before any output exists and before the scenes' Dask cluster starts: AOI,
    model packages, every scene against every package, tile size against overlap, and a
    writable output folder. The VRTs of the scenes that need one are written to a temp folder
    first and moved under ``OUT/.geoseg-inputs/`` only then.

    ``allow_no_items``: a search that finds no items (a rolling window on a cloudy week) is
    no error: the run maps the ``scenes`` given, or nothing.
    """
    logger = get_run_logger()
    run = RunSettings(
        aoi=aoi,
        aoi_layer=aoi_layer,
        scenes=[str(s) for s in scenes],
        stac=stac,
        newest=newest,
        models=list(models),
        out=out,
        **options.run_options(),
    )
    with ExitStack() as stack:
        written = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="geoseg-inputs-")))
        stack.enter_context(forwarded_logs(FORWARDED_LOGGERS, logger))
        # headers of remote rasters and item assets are read here, in the flow's process
        stack.enter_context(gdal_remote_env(run.scenes, searched=run.stac is not None))
        try:
            packages, planned = check_inputs(run, written)
        except StacError as exc:
            if not (allow_no_items and is_empty_search(exc, run.stac)):
                raise
            if not run.scenes:
                logger.info("%s; nothing to map", exc)
                return RunPlan(run=run, jobs=[])
            logger.info("%s; mapping the scenes given", exc)
            packages, planned = check_inputs(run.model_copy(update={"stac": None}), written)
        # checks tile size against overlap, as `geoseg run` does before its output folder
        # exists (else `predict` would find it on a Dask worker, after the cluster started)
        predict_settings = resolve_predict_settings(run, packages[0])
        # a bad --crs fails here, before any scene task
        mosaic_plan, planned = plan_with_mosaic(run, packages[0], planned)
        prepare_output_dir(run.out)
        vrts = publish_vrts(written, run.out / INPUTS_DIR)
    jobs = scene_jobs(run, planned, packages=packages, predict_settings=predict_settings, vrts=vrts)
    items = sum(1 for j in jobs if j.source.get("kind") == "stac-item")
    logger.info(
        "%d scene(s) cover the AOI%s: %s",
        len(jobs),
        f" ({items} STAC item(s))" if items else "",
        ", ".join(j.name for j in jobs),
    )
    if mosaic_plan is None:
        return RunPlan(run=run, jobs=jobs)
    grid = mosaic_plan.grid
    return RunPlan(
        run=run,
        jobs=jobs,
        mosaic_phase=grid_phase_of(grid),
        mosaic_key=mosaic_key(jobs, grid, run),
    )


@task(name="predict", task_run_name="predict-{job.name}", **SCENE_TASK_OPTIONS)
@settings_named
def predict(job: SceneJob, run: RunSettings) -> PredictedScene:
    """Tiles -> model -> blended class and confidence COGs in the scene's staging folder."""
    logger = get_run_logger()
    predictor, settings = predictor_for(run)
    # on a Dask worker (another process): GDAL's settings for the scene's remote band files
    with gdal_remote_env(job.hrefs), staged_folder(job.stage_dir) as folder:
        stats, timings = predict_to_folder(
            job.name,
            scene_window(job),
            predictor=predictor,
            settings=settings,
            folder=folder,
            progress=LogProgress(logger),
        )
    logger.info("%s: predicted in %.1f s", job.name, stats.seconds)
    return PredictedScene(
        job=job,
        stats=stats,
        timings_s=timings,
        resolved=resolved_prediction(predictor, settings),
        worker=dask_worker_address(),
    )


@task(name="vectorize", task_run_name="vectorize-{job.name}", **SCENE_TASK_OPTIONS)
@settings_named
def vectorize(job: SceneJob, predicted: PredictedScene, run: RunSettings) -> VectorizedScene:
    """Polygonize the staged class raster into polygons.gpkg (atomically, beside it)."""
    logger = get_run_logger()
    vec, seconds = vectorize_folder(
        job.name,
        job.stage_dir,
        packages=packages_for(run),
        connectivity=Connectivity(run.connectivity),
        progress=LogProgress(logger),
        vectorize=task_vectorize_options(run),
    )
    logger.info(
        "%s: %d polygons from %d block(s) on %s",
        job.name,
        vec.n_polygons,
        vec.blocks,
        f"{vec.dask_workers} Dask workers" if vec.dask_workers else "this worker",
    )
    return VectorizedScene(predicted, vec.n_polygons, seconds, vec.blocks, vec.dask_workers)


@task(name="publish", task_run_name="publish-{job.name}", **SCENE_TASK_OPTIONS)
@settings_named
def publish(job: SceneJob, vectorized: VectorizedScene) -> PublishedScene:
    """Rename the staged folder onto ``OUT/<scene>/`` (replacing an older result) at once.

    Idempotent: a scene already published with this key is left as it is.
    """
    if job.stage() != SceneStage.PUBLISHED:
        for partial in job.stage_dir.glob(".*.partial-*"):  # of a killed vectorize attempt
            partial.unlink()
        write_key_file(job.stage_dir, job.key)
        publish_folder(job.stage_dir, job.final_dir)
    remove_leftovers(job)
    predicted = vectorized.predicted
    timings = {**predicted.timings_s, "vectorize": vectorized.seconds}
    with gdal_remote_env(job.hrefs):
        target = scene_window(job)
    result = scene_result(
        job.name,
        target,
        final_dir=job.final_dir,
        stats=predicted.stats,
        polygons=vectorized.polygons,
        timings=timings,
    )
    get_run_logger().info("%s: published %s", job.name, job.final_dir)
    return PublishedScene(
        result=result,
        resolved=predicted.resolved,
        blocks=vectorized.blocks,
        dask_workers=vectorized.dask_workers,
        worker=predicted.worker,
    )


def mosaic_key(jobs: Sequence[SceneJob], grid: SceneGrid, run: RunSettings) -> str:
    """The cache key of a run's mosaic: its scenes' keys (each already holds the AOI, model
    and output settings), the resolved mosaic grid (however ``crs`` was spelled) and the
    choice rule; a new scene makes a new key."""
    parts = [
        *(j.key for j in jobs),
        grid.crs.to_wkt(),
        repr(tuple(grid.transform)[:6]),
        repr(grid.shape),
        run.prefer,
        str(run.connectivity),
    ]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


def mosaic_cache_key(context: TaskRunContext, parameters: dict[str, Any]) -> str:
    """Prefect ``cache_key_fn`` of the mosaic task (`mosaic_key`)."""
    return f"geoseg-{context.task.name}-{parameters['plan'].mosaic_key}"


def mosaic_on_disk(plan: RunPlan) -> bool:
    """Whether ``OUT/mosaic/`` holds the mosaic of this key with all its files."""
    folder = plan.run.out / MOSAIC_DIR
    published = read_key_file(folder / KEY_FILE)
    return (
        published is not None
        and published[0] == plan.mosaic_key
        and all((folder / n).is_file() for n in published[1])
    )


@task(
    name="mosaic",
    task_run_name="mosaic",
    cache_key_fn=mosaic_cache_key,
    persist_result=True,
    **IO_TASK_OPTIONS,
)
@settings_named
def mosaic(plan: RunPlan, published: Sequence[PublishedScene]) -> dict[str, Any]:
    """``OUT/mosaic/`` from the published scenes (`geoseg.mosaic`), after all of them."""
    logger = get_run_logger()
    logger.info("mosaic: merging %d scene(s)", len(published))
    record = run_mosaic(
        plan.run,
        plan_mosaic(plan.run, packages_for(plan.run)[0], phase=plan.mosaic_phase),
        [p.result for p in published],
        packages_for(plan.run),
        vectorize=task_vectorize_options(plan.run),
    )
    folder = plan.run.out / MOSAIC_DIR
    write_key_file(folder, plan.mosaic_key)
    logger.info("mosaic: %d polygons in %s", record["polygons"], folder)
    return record


def submit_mosaic(plan: RunPlan, published: Sequence[PublishedScene]) -> dict[str, Any]:
    """Run (or take from the cache, while its files are there) the run's mosaic."""
    task_ = mosaic.with_options(
        refresh_cache=not mosaic_on_disk(plan), result_storage=plan.cache_dir
    )
    return task_(plan, published)


@task(name="write-run-record", cache_policy=NO_CACHE, **IO_TASK_OPTIONS)
@settings_named
def write_run_record(
    plan: RunPlan,
    published: Sequence[PublishedScene],
    seconds: float,
    mosaic: dict[str, Any] | None = None,
) -> Path:
    """``run.json``, written atomically once every scene (and the mosaic) is done."""
    packages = packages_for(plan.run)
    results = [p.result for p in published]
    return write_run_json(
        plan.run,
        packages=packages,
        resolved=published[0].resolved,
        results=results,
        seconds=seconds,
        mosaic=mosaic,
    )
