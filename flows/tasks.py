"""Prefect tasks of the geoseg flows: each does one job on paths and calls geoseg library code.

Per scene the work is three cached tasks, predict -> vectorize -> publish, chained through
small records (`flows.jobs`: `PredictedScene`, `VectorizedScene`) of paths and numbers.
Their cache key is the scene's `SceneJob.key`: a hash of the scene file (path, size, mtime),
the AOI file's content, the pixel window, the model packages' sha256 and every setting that
changes the outputs. Results are persisted under ``OUT/.geoseg-cache`` (beside the outputs,
so any machine that sees the outputs sees the cache), so a rerun after a crash -- or with a
new scene in the folder -- recomputes only what is missing.

A cache entry is only trusted while its files are there: the flow looks at the disk before
submitting (`SceneJob.stage`) and refreshes the cache of every stage whose files are gone.
Every stage writes into a temp name and renames it when complete, so the presence of a file
means it is whole.

Retries: only on transient I/O errors (`is_transient_io_error`): an ``OSError`` that is not a
`GeosegError`. Bad input (a `GeosegError`) fails at once with its message.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.tasks import exponential_backoff

from flows.jobs import (
    KEY_FILE,
    PredictedScene,
    PublishedScene,
    RunPlan,
    SceneJob,
    SceneStage,
    VectorizedScene,
    remove_leftovers,
    scene_jobs,
)
from flows.naming import settings_named
from geoseg.config import RunOptions, RunSettings, resolve_predict_settings, vectorize_options
from geoseg.errors import GeosegError
from geoseg.geo.window import PixelWindow
from geoseg.inference.predictor import Predictor
from geoseg.inference.scene import SceneWindow
from geoseg.inference.settings import PredictSettings
from geoseg.io.aoi import aoi_in_crs, read_aoi
from geoseg.io.raster import open_scene
from geoseg.io.staging import publish_folder, staged_folder
from geoseg.models.package import ModelPackage, load_package
from geoseg.pipeline.plan import check_inputs, prepare_output_dir
from geoseg.pipeline.record import resolved_prediction, scene_result, write_run_json
from geoseg.pipeline.run import make_predictor, predict_to_folder, vectorize_folder, write_mosaics
from geoseg.sources.inputs import find_scene_files
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

INPUTS_DIR = ".geoseg-inputs"
"""Where a flow run's scene VRTs live (inside the output folder: every worker can read it)."""

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
    """The job's scene, window and AOI geometry, re-read from the paths it carries."""
    scene = open_scene(job.scene)
    geometry = aoi_in_crs(read_aoi(job.aoi), scene.grid.crs)
    return SceneWindow(scene, PixelWindow(*job.window), geometry)


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
) -> RunPlan:
    """Resolve the scene inputs, validate every input and plan the scenes the AOI touches.

    All bad input fails here, before any output exists and before the scenes' Dask cluster
    starts: AOI, model packages, every scene against every package, tile size against
    overlap, and a writable output folder.
    """
    files = find_scene_files(scenes, newest)
    run = RunSettings(aoi=aoi, scenes=files, models=list(models), out=out, **options.run_options())
    packages, planned = check_inputs(run, run.out / INPUTS_DIR)
    # checks tile size against overlap, as `geoseg run` does before its output folder exists
    # (else `predict` would find it on a Dask worker, after the cluster started)
    predict_settings = resolve_predict_settings(run, packages[0])
    prepare_output_dir(run.out)
    jobs = scene_jobs(run, planned, packages=packages, predict_settings=predict_settings)
    get_run_logger().info(
        "%d scene(s) of %d cover the AOI: %s",
        len(jobs),
        len(files),
        ", ".join(j.name for j in jobs),
    )
    return RunPlan(run=run, jobs=jobs)


@task(name="predict", task_run_name="predict-{job.name}", **SCENE_TASK_OPTIONS)
@settings_named
def predict(job: SceneJob, run: RunSettings) -> PredictedScene:
    """Tiles -> model -> blended class and confidence COGs in the scene's staging folder."""
    logger = get_run_logger()
    predictor, settings = predictor_for(run)
    with staged_folder(job.stage_dir) as folder:
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
        (job.stage_dir / KEY_FILE).write_text(job.key + "\n", encoding="utf-8")
        publish_folder(job.stage_dir, job.final_dir)
    remove_leftovers(job)
    predicted = vectorized.predicted
    timings = {**predicted.timings_s, "vectorize": vectorized.seconds}
    result = scene_result(
        job.name,
        scene_window(job),
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


@task(name="write-run-record", cache_policy=NO_CACHE, **IO_TASK_OPTIONS)
@settings_named
def write_run_record(plan: RunPlan, published: Sequence[PublishedScene], seconds: float) -> Path:
    """Mosaics of the scenes and ``run.json``, written atomically once every scene is done."""
    packages = packages_for(plan.run)
    results = [p.result for p in published]
    return write_run_json(
        plan.run,
        packages=packages,
        resolved=published[0].resolved,
        results=results,
        mosaics=write_mosaics(plan.run.out, results, packages[0]),
        seconds=seconds,
    )
