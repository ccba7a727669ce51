"""`segment_aoi`: map an AOI from scenes or STAC items, as a Prefect flow (same library as
`geoseg run`).

Stages: select scenes -> per scene predict -> vectorize -> publish -> run record. Scenes are
what ``geoseg run`` takes: files, folders, globs, STAC item files or URLs, https:// and s3://
rasters, and/or a STAC API search (``settings.stac``; ``settings.stac_days`` makes it a
rolling window ending at the run's scheduled time, for nightly deployments). The scenes run
in parallel on Dask through prefect-dask: a LocalCluster started for the run by default, or a
running scheduler (``settings.dask_address`` or ``$GEOSEG_DASK_ADDRESS``). Scene tasks are
cached (see `flows.tasks`): a rerun recomputes only the scenes -- and, within a scene, the
stages -- whose outputs are missing, so an item already mapped by an earlier night is not
mapped again.

Crash detection: every flow run emits a ``prefect.flow-run.heartbeat`` event every
``PREFECT_FLOWS_HEARTBEAT_FREQUENCY`` seconds; the automation `flows.deploy` creates marks a
run of a geoseg-tagged deployment Crashed when they stop (a killed worker). The scene subflow
gets the run's tags, so it is covered too.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import time
from pathlib import Path
from typing import Self

from prefect import flow, get_run_logger, tags
from prefect.futures import PrefectFuture, wait
from prefect_dask import DaskTaskRunner
from pydantic import ConfigDict, Field, model_validator

from flows.jobs import PublishedScene, RunPlan, SceneJob, SceneStage
from flows.tasks import (
    predict,
    publish,
    select_scenes,
    submit_mosaic,
    vectorize,
    write_run_record,
)
from geoseg.config import RunOptions, StacQuery
from geoseg.models import DEMO_MODEL

DASK_ADDRESS_ENV = "GEOSEG_DASK_ADDRESS"
DEFAULT_LOCAL_WORKERS = 2


class SegmentSettings(RunOptions):
    """How `segment_aoi` predicts, vectorizes and distributes: `geoseg run`'s options
    (`geoseg.config.RunOptions`, same names and defaults) plus the flow's own."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    newest: int | None = Field(
        None, ge=1, description="only the N newest scenes (file mtime, item datetime)"
    )
    aoi_layer: str | None = Field(None, description="the AOI layer of a multi-layer file")
    stac: StacQuery | None = Field(
        None,
        description="search a STAC API for the scenes: api, collections, datetime, max_cloud, "
        "limit (the newest N items found)",
    )
    stac_days: float | None = Field(
        None,
        gt=0,
        description="search the items of the last N days: a datetime window ending at the "
        "run's scheduled start (instead of stac.datetime; for scheduled runs). A window "
        "without items is no error: the run maps the scenes given, or nothing",
    )
    dask_address: str | None = Field(
        default_factory=lambda: os.environ.get(DASK_ADDRESS_ENV) or None,
        description=f"running Dask scheduler for the scenes (default: ${DASK_ADDRESS_ENV}, "
        "else a LocalCluster started for the run)",
    )
    dask_workers: int = Field(
        DEFAULT_LOCAL_WORKERS, ge=1, description="worker processes of the LocalCluster"
    )

    @model_validator(mode="after")
    def _one_datetime_window(self) -> Self:
        if self.stac_days is not None and self.stac is None:
            raise ValueError("stac_days needs a STAC search (stac: {api, collections})")
        if self.stac_days is not None and self.stac and self.stac.datetime:
            raise ValueError("give stac.datetime or stac_days, not both")
        return self

    def stac_query(self, end: dt.datetime) -> StacQuery | None:
        """The search of this run: ``stac``, with the ``stac_days`` window ending at ``end``."""
        if self.stac is None or self.stac_days is None:
            return self.stac
        return self.stac.model_copy(update={"datetime": days_window(self.stac_days, end)})


def days_window(days: float, end: dt.datetime) -> str:
    """The RFC 3339 interval of the ``days`` before ``end`` (UTC, whole seconds)."""
    end = dt.datetime.fromtimestamp(int(end.timestamp()), dt.UTC)  # also from a Pendulum time
    start = end - dt.timedelta(days=days)
    return f"{start:%Y-%m-%dT%H:%M:%SZ}/{end:%Y-%m-%dT%H:%M:%SZ}"


def run_time() -> dt.datetime:
    """When this flow run was meant to start: a scheduled run's slot (so a late start or a
    retry searches the same window), else now."""
    from prefect.runtime import flow_run

    scheduled = flow_run.scheduled_start_time
    return scheduled if isinstance(scheduled, dt.datetime) else dt.datetime.now(dt.UTC)


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
    scenes: list[str] | str | None = None,
    *,
    out: Path,
    model: Path | None = None,
    settings: SegmentSettings | None = None,
) -> list[PublishedScene]:
    """Map ``aoi`` from ``scenes`` and/or the STAC search ``settings.stac`` into ``out``.

    ``scenes``: files, folders, glob patterns, STAC Item / ItemCollection / ndjson files or
    URLs, https:// or s3:// rasters (``geoseg run --scenes``); may be empty with a search.
    ``model`` defaults to the demo package shipped with geoseg. Outputs are those of
    ``geoseg run``: ``OUT/<scene>/`` per scene (per item: its id) and ``OUT/run.json``; the
    VRTs of STAC items and remote rasters are kept under ``OUT/.geoseg-inputs/``.

    With ``settings.stac_days`` the search covers the N days before the run's scheduled
    start. A rolling window, not "since the last successful run": a STAC item's datetime is
    its acquisition time, and catalogues publish items hours to days later, so a window that
    starts at the last run would miss every item published late; the overlap costs nothing,
    because the items an earlier night mapped are cached (same key: item, band files, read
    plan, grid) and not recomputed. A night whose window holds no item maps the ``scenes``
    given, or nothing (the run completes; run.json of the last mapping stays).
    """
    t0 = time.perf_counter()
    settings = settings or SegmentSettings()
    logging.getLogger("distributed").setLevel(logging.WARNING)
    entries = [scenes] if isinstance(scenes, str) else list(scenes or [])
    plan = select_scenes(
        aoi=aoi,
        scenes=entries,
        models=[model or DEMO_MODEL],
        out=out,
        options=RunOptions(**settings.run_options()),
        newest=settings.newest,
        aoi_layer=settings.aoi_layer,
        stac=settings.stac_query(run_time()),
        allow_no_items=settings.stac_days is not None,
    )
    if not plan.jobs:
        get_run_logger().info("no scene to map: %s unchanged", out)
        return []
    runner = scene_task_runner(settings)
    # the deployment's tags on the scene subflow too (the heartbeat automation matches them)
    from prefect.runtime import flow_run

    with tags(*(flow_run.tags or [])):
        published = segment_scenes.with_options(task_runner=runner)(plan)
    made = submit_mosaic(plan, published) if plan.run.mosaic else None
    write_run_record(plan, published, time.perf_counter() - t0, made)
    return published
