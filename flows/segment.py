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
from importlib.resources import files
from pathlib import Path

from prefect import flow
from prefect.futures import PrefectFuture, wait
from prefect_dask import DaskTaskRunner
from pydantic import BaseModel, ConfigDict, Field

from flows.tasks import (
    PublishedScene,
    RunPlan,
    SceneJob,
    SceneStage,
    predict,
    publish,
    select_scenes,
    vectorize,
    write_run_record,
)
from geoseg.config import RunSettings
from geoseg.inference.stitch import BlendKind
from geoseg.vectorize import DEFAULT_BLOCK_PX

DASK_ADDRESS_ENV = "GEOSEG_DASK_ADDRESS"
DEFAULT_LOCAL_WORKERS = 2


class SegmentSettings(BaseModel):
    """How `segment_aoi` predicts, vectorizes and distributes; defaults as `geoseg run`."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    newest: int | None = Field(
        None, ge=1, description="only the N most recently modified scenes (nightly runs)"
    )
    device: str = Field("auto", description="auto, cpu or cuda")
    tile_size: int | None = Field(None, ge=16, description="tile size in px (package default)")
    overlap: int | None = Field(None, ge=0, description="tile overlap in px (package default)")
    batch_size: int | None = Field(None, ge=1, description="tiles per batch (package default)")
    blend: BlendKind = BlendKind.HANN
    tta: bool = Field(False, description="average the 8 flips/rotations of every tile")
    connectivity: int = Field(4, description="polygon connectivity: 4 or 8")
    block_size: int = Field(DEFAULT_BLOCK_PX, ge=1, description="vectorize block edge in px")
    min_area: float = Field(0.0, ge=0, description="merge regions smaller than this (m²)")
    simplify: float = Field(0.0, ge=0, description="boundary simplification tolerance (m)")
    dask_address: str | None = Field(
        default_factory=lambda: os.environ.get(DASK_ADDRESS_ENV) or None,
        description=f"running Dask scheduler for the scenes (default: ${DASK_ADDRESS_ENV}, "
        "else a LocalCluster started for the run)",
    )
    dask_workers: int = Field(
        DEFAULT_LOCAL_WORKERS, ge=1, description="worker processes of the LocalCluster"
    )


def demo_model() -> Path:
    """The small demo package shipped inside geoseg (the CLI's default model too)."""
    return Path(str(files("geoseg") / "data" / "demo.geoseg"))


def run_settings(*, aoi: Path, model: Path, out: Path, settings: SegmentSettings) -> RunSettings:
    """The `geoseg run` settings equivalent to the flow's parameters (scenes resolved later)."""
    return RunSettings(
        aoi=aoi,
        scenes=[aoi],  # placeholder; select_scenes puts the resolved scene files here
        models=[model],
        out=out,
        device=settings.device,
        tile_size=settings.tile_size,
        overlap=settings.overlap,
        batch_size=settings.batch_size,
        blend=settings.blend,
        tta=settings.tta,
        connectivity=settings.connectivity,
        block_size=settings.block_size,
        min_area=settings.min_area,
        simplify=settings.simplify,
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
    run = run_settings(aoi=aoi, model=model or demo_model(), out=out, settings=settings)
    scenes = [scenes] if isinstance(scenes, str) else scenes
    plan = select_scenes(aoi=aoi, scenes=scenes, newest=settings.newest, run=run)
    runner = scene_task_runner(settings)
    published = segment_scenes.with_options(task_runner=runner)(plan)
    write_run_record(plan, published, time.perf_counter() - t0)
    return published
