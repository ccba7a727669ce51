"""`segment_aoi`: map an AOI from a set of scenes, as a Prefect flow (same library as `geoseg run`).

Stages: select scenes -> per scene predict -> vectorize -> publish -> run record. The scenes
run in parallel on Dask through prefect-dask: a LocalCluster started for the run by default,
or a running scheduler (``settings.dask_address`` or ``$GEOSEG_DASK_ADDRESS``). Scene tasks
are cached (see `flows.tasks`): a rerun recomputes only the scenes -- and, within a scene,
the stages -- whose outputs are missing.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

from prefect import flow
from prefect.futures import PrefectFuture, wait
from prefect_dask import DaskTaskRunner
from pydantic import ConfigDict, Field

from flows.jobs import PublishedScene, RunPlan, SceneJob, SceneStage
from flows.tasks import predict, publish, select_scenes, vectorize, write_run_record
from geoseg.config import RunOptions
from geoseg.models import DEMO_MODEL

DASK_ADDRESS_ENV = "GEOSEG_DASK_ADDRESS"
DEFAULT_LOCAL_WORKERS = 2


class SegmentSettings(RunOptions):
    """How `segment_aoi` predicts, vectorizes and distributes: `geoseg run`'s options
    (`geoseg.config.RunOptions`, same names and defaults) plus the flow's own."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    newest: int | None = Field(
        None, ge=1, description="only the N most recently modified scenes (nightly runs)"
    )
    dask_address: str | None = Field(
        default_factory=lambda: os.environ.get(DASK_ADDRESS_ENV) or None,
        description=f"running Dask scheduler for the scenes (default: ${DASK_ADDRESS_ENV}, "
        "else a LocalCluster started for the run)",
    )
    dask_workers: int = Field(
        DEFAULT_LOCAL_WORKERS, ge=1, description="worker processes of the LocalCluster"
    )


def scene_task_runner(settings: SegmentSettings) -> DaskTaskRunner:
    """The Dask task runner of the scenes: the given scheduler, else a fresh LocalCluster."""
    if settings.dask_address:
        return DaskTaskRunner(address=settings.dask_address)
    return DaskTaskRunner(
        cluster_kwargs={
            "n_workers": settings.dask_workers,
            "threads_per_worker": 1,
            "processes": True,
            "dashboard_address": None,
            "scheduler_kwargs": {"dashboard": False, "dashboard_address": "127.0.0.1:0"},
            "silence_logs": logging.WARNING,
        }
    )


def submit_scene(job: SceneJob, plan: RunPlan) -> PrefectFuture[PublishedScene]:
    """Submit predict -> vectorize -> publish of one scene; stages done on disk stay cached.

    A cache entry is used only if the stage's files are still there; otherwise the stage's
    cache is refreshed (recomputed and overwritten).
    """
    done = job.stage()
    storage = {"result_storage": plan.cache_dir}

    def refresh(stage: SceneStage) -> bool:
        return done < stage

    predicted = predict.with_options(refresh_cache=refresh(SceneStage.PREDICTED), **storage)
    vectorized = vectorize.with_options(refresh_cache=refresh(SceneStage.VECTORIZED), **storage)
    published = publish.with_options(refresh_cache=refresh(SceneStage.PUBLISHED), **storage)
    p = predicted.submit(job, plan.run)
    v = vectorized.submit(job, p, plan.run)
    return published.submit(job, v)


@flow(name="segment-scenes", description="The scenes of a segment-aoi run, on Dask.")
def segment_scenes(plan: RunPlan) -> list[PublishedScene]:
    """Every scene's tasks on this flow's Dask task runner; fails after all have finished."""
    futures = [submit_scene(job, plan) for job in plan.jobs]
    wait(futures)
    return [f.result() for f in futures]


@flow(name="segment-aoi", description="Land-cover COGs and polygons for an AOI from scenes.")
def segment_aoi(
    aoi: Path,
    scenes: list[str] | str,
    out: Path,
    model: Path | None = None,
    settings: SegmentSettings | None = None,
) -> list[PublishedScene]:
    """Map ``aoi`` from ``scenes`` (files, folders or glob patterns) into ``out``.

    ``model`` defaults to the demo package shipped with geoseg. Outputs are those of
    ``geoseg run``: ``OUT/<scene>/`` per scene and ``OUT/run.json``.
    """
    t0 = time.perf_counter()
    settings = settings or SegmentSettings()
    logging.getLogger("distributed").setLevel(logging.WARNING)
    plan = select_scenes(
        aoi=aoi,
        scenes=[scenes] if isinstance(scenes, str) else scenes,
        models=[model or DEMO_MODEL],
        out=out,
        options=RunOptions(**settings.run_options()),
        newest=settings.newest,
    )
    runner = scene_task_runner(settings)
    published = segment_scenes.with_options(task_runner=runner)(plan)
    write_run_record(plan, published, time.perf_counter() - t0)
    return published
