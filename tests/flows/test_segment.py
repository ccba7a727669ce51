"""Prefect flows against a real Prefect server on loopback, with real Dask clusters.

They use the session's Prefect server (``prefect server start`` with a temp PREFECT_HOME,
see `tests.support.prefect_server`); flows run in this process, in a subprocess that gets
killed, and through a deployment picked up by a process worker. Scenes are small (256 px) so
the module stays within minutes.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyogrio
import pytest
import rasterio

pytest.importorskip("prefect", reason="Prefect is not installed: pip install 'geoseg[flows]'")
pytest.importorskip("prefect_dask", reason="prefect-dask is not installed: geoseg[flows]")

from prefect import flow, task
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    FlowRunFilter,
    FlowRunFilterParentFlowRunId,
    LogFilter,
    LogFilterFlowRunId,
)
from prefect.deployments import run_deployment

from flows.jobs import CACHE_DIR_NAME, INPUTS_DIR_NAME, KEY_FILE
from flows.segment import SegmentSettings, segment_aoi
from flows.tasks import IO_TASK_OPTIONS
from flows.train import train_model
from geoseg.errors import SceneError
from geoseg.models.package import load_package
from geoseg.synthetic import write_synthetic_scene
from geoseg.vectorize import VectorizeOptions, vectorize_file
from tests.support.cli import REPO, geoseg_cli
from tests.support.prefect_server import BIN, stop_process_group, task_runs

pytestmark = pytest.mark.slow

SCENE_NAMES = ("a", "b", "c")
CPU = {"device": "cpu", "block_size": 128}  # 256 px scenes: 4 vectorize blocks each


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def scenes(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Three 256 px scenes a.tif, b.tif, c.tif on one grid in a folder, and an AOI over them."""
    root = tmp_path_factory.mktemp("flow-scenes")
    folder = root / "scenes"
    folder.mkdir()
    aoi = root / "aoi.geojson"
    for i, name in enumerate(SCENE_NAMES):
        written = write_synthetic_scene(root / f"src-{name}", size_px=256, seed=31 + i)
        written.image_path.replace(folder / f"{name}.tif")
        if i == 0:
            written.aoi_path.replace(aoi)
    return folder, aoi


@pytest.fixture(scope="module")
def dask_scheduler(prefect_api: str) -> Iterator[str]:
    """A running Dask cluster (1 worker process) that flows reach by its scheduler address."""
    from distributed import LocalCluster

    with LocalCluster(
        n_workers=1,
        threads_per_worker=1,
        processes=True,
        dashboard_address=None,
        scheduler_kwargs={"dashboard": False, "dashboard_address": "127.0.0.1:0"},
        silence_logs=logging.WARNING,
    ) as cluster:
        yield cluster.scheduler_address


@pytest.fixture(scope="module")
def reference_run(prefect_api: str, scenes, tmp_path_factory) -> tuple[Path, list[Any]]:
    """An uninterrupted run of the three scenes on a LocalCluster of 2 worker processes."""
    folder, aoi = scenes
    out = tmp_path_factory.mktemp("reference") / "out"
    settings = SegmentSettings(**CPU, dask_workers=2)
    published = segment_aoi(aoi=aoi, scenes=[str(folder)], out=out, settings=settings)
    return out, published


# --------------------------------------------------------------------------- helpers


def _log_messages(flow_run_id: Any, *, containing: str, timeout_s: float = 30) -> list[str]:
    """Log lines of a flow run and its subflows that contain ``containing`` (logs arrive in
    batches, so wait until there is one)."""
    with get_client(sync_client=True) as client:
        children = client.read_flow_runs(
            flow_run_filter=FlowRunFilter(
                parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=[flow_run_id])
            )
        )
        log_filter = LogFilter(
            flow_run_id=LogFilterFlowRunId(any_=[flow_run_id, *(c.id for c in children)])
        )
        deadline = time.monotonic() + timeout_s
        while True:
            found = [
                log.message
                for log in client.read_logs(log_filter=log_filter, limit=200)
                if containing in log.message
            ]
            if found or time.monotonic() > deadline:
                return found
            time.sleep(0.5)


def _task_states(flow_run_id: Any) -> dict[str, str]:
    """Task run name -> state name (Completed, Cached, Failed, ...) of `task_runs`."""
    return {r.name: r.state.name for r in task_runs(flow_run_id) if r.state is not None}


def _polygons(gpkg: Path) -> list[tuple[Any, ...]]:
    """Every feature as (WKB, attributes...), sorted: comparable across runs."""
    table = pyogrio.read_dataframe(gpkg, layer="landcover")
    rows = [
        (geom.wkb, *(table[c].iloc[i] for c in table.columns if c != "geometry"))
        for i, geom in enumerate(table.geometry)
    ]
    return sorted(rows, key=lambda r: (r[0], str(r[1:])))


def _leftovers(out: Path) -> list[Path]:
    """Hidden temp/staging entries under ``out`` (the result cache and scene VRTs aside)."""
    kept = (CACHE_DIR_NAME, INPUTS_DIR_NAME)
    hidden = [p for p in out.iterdir() if p.name.startswith(".") and p.name not in kept]
    return hidden + [p for p in out.glob("*/.*") if p.name != KEY_FILE]


def _same_outputs(out_a: Path, out_b: Path, name: str) -> None:
    for raster in ("classes.tif", "confidence.tif"):
        with rasterio.open(out_a / name / raster) as a, rasterio.open(out_b / name / raster) as b:
            assert a.crs == b.crs and a.transform == b.transform, (name, raster)
            np.testing.assert_array_equal(a.read(), b.read(), err_msg=f"{name}/{raster}")
    assert _polygons(out_a / name / "polygons.gpkg") == _polygons(out_b / name / "polygons.gpkg")


# --------------------------------------------------------------------------- tests


def test_dask_cluster_of_two_workers_runs_three_scenes(reference_run, scenes) -> None:
    out, published = reference_run
    folder, _ = scenes
    assert [p.result.scene for p in published] == list(SCENE_NAMES)
    assert len({p.worker for p in published}) == 2, [p.worker for p in published]
    for p in published:
        # 4 blocks, one after another inside the scene task: no nested LocalCluster
        assert (p.blocks, p.dask_workers) == (4, 0), p
        scene_dir = out / p.result.scene
        for name in ("classes.tif", "confidence.tif", "polygons.gpkg", "classes.qml", KEY_FILE):
            assert (scene_dir / name).is_file(), scene_dir / name
        # seam-exact: the same polygons as one pass in this process
        single = scene_dir.parent / f"single-{p.result.scene}.gpkg"
        vectorize_file(
            scene_dir / "classes.tif",
            single,
            confidence_path=scene_dir / "confidence.tif",
            options=VectorizeOptions(workers=0, block_size_px=4096),
        )
        assert pyogrio.read_info(single, layer="landcover")["features"] == p.result.polygons
        single.unlink()
        single.with_suffix(".qml").unlink()
        with (
            rasterio.open(folder / f"{p.result.scene}.tif") as src,
            rasterio.open(scene_dir / "classes.tif") as ds,
        ):
            assert ds.crs == src.crs
    record = json.loads((out / "run.json").read_text())
    assert [s["scene"] for s in record["scenes"]] == list(SCENE_NAMES)
    assert not (out / "mosaic").exists() and record["mosaic"] is None  # only with mosaic=True
    assert not _leftovers(out)


def test_bad_input_fails_fast_with_the_geoseg_message(prefect_api, scenes, tmp_path) -> None:
    folder, aoi = scenes
    three_bands = tmp_path / "three_bands.tif"
    with rasterio.open(folder / "a.tif") as src:
        profile = {**src.profile, "count": 3}
        with rasterio.open(three_bands, "w", **profile) as dst:
            dst.write(src.read([1, 2, 3]))
    t0 = time.perf_counter()
    state = segment_aoi(
        aoi=aoi,
        scenes=[str(three_bands)],
        out=tmp_path / "out",
        settings=SegmentSettings(**CPU, dask_workers=1),
        return_state=True,
    )
    assert state.is_failed()
    with get_client(sync_client=True) as client:
        stored = client.read_flow_run(state.state_details.flow_run_id).state
    assert stored is not None and stored.is_failed()
    assert "three_bands.tif" in stored.message and "band" in stored.message, stored.message
    # no retries for bad input: select-scenes ran once and the run failed within seconds
    runs = task_runs(state.state_details.flow_run_id)
    assert [(r.name.split("-")[0], r.state_name, r.run_count) for r in runs] == [
        ("select", "Failed", 1)
    ]
    assert time.perf_counter() - t0 < 60
    assert not (tmp_path / "out").exists()


def test_retry_condition_retries_io_errors_only(prefect_api) -> None:
    attempts: list[str] = []

    @task(**{**IO_TASK_OPTIONS, "retry_delay_seconds": 0})
    def flaky(kind: str) -> str:
        attempts.append(kind)
        if len(attempts) == 1 or kind == "bad input":
            raise (SceneError("x.tif: bad") if kind == "bad input" else OSError("mount gone"))
        return "ok"

    @flow
    def retrying(kind: str) -> str:
        return flaky(kind)

    assert retrying("io") == "ok"
    assert attempts == ["io", "io"]
    attempts.clear()
    attempts.append("first")  # so that only the error kind decides
    state = retrying("bad input", return_state=True)
    assert state.is_failed() and "x.tif: bad" in state.message
    assert attempts == ["first", "bad input"]  # one attempt, no retry


def test_killed_run_resumes_only_unfinished_scenes(
    prefect_api, dask_scheduler, reference_run, scenes, tmp_path
) -> None:
    folder, aoi = scenes
    out = tmp_path / "out"
    script = tmp_path / "run_flow.py"
    script.write_text(
        textwrap.dedent(
            f"""
            from flows.segment import SegmentSettings, segment_aoi

            if __name__ == "__main__":  # Dask's spawned workers import this file too
                segment_aoi(aoi={str(aoi)!r}, scenes=[{str(folder)!r}], out={str(out)!r},
                            settings=SegmentSettings(device="cpu", block_size=128,
                                                     dask_workers=1))
            """
        )
    )
    log_path = tmp_path / "killed-run.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, str(script)],
            cwd=REPO,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its Dask workers are killed with it
        )
        deadline = time.monotonic() + 240
        try:
            while not any((out / n / KEY_FILE).exists() for n in SCENE_NAMES):
                if proc.poll() is not None or time.monotonic() > deadline:
                    tail = log_path.read_text(errors="replace")[-3000:]
                    pytest.fail(f"no scene published before the flow ended or timed out:\n{tail}")
                time.sleep(0.05)
        finally:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    finished = {n for n in SCENE_NAMES if (out / n / KEY_FILE).exists()}
    assert finished and finished != set(SCENE_NAMES), f"kill came too late: {finished}"

    def file_times(name: str) -> dict[str, int]:
        return {f.name: f.stat().st_mtime_ns for f in sorted((out / name).iterdir())}

    mtimes = {n: file_times(n) for n in finished}

    state = segment_aoi(
        aoi=aoi,
        scenes=[str(folder)],
        out=out,
        settings=SegmentSettings(**CPU, dask_address=dask_scheduler),
        return_state=True,
    )
    assert state.is_completed(), state.message
    states = _task_states(state.state_details.flow_run_id)
    for name in SCENE_NAMES:
        stages = {stage: states[f"{stage}-{name}"] for stage in ("predict", "vectorize", "publish")}
        if name in finished:
            assert stages["predict"] == stages["vectorize"] == "Cached", (name, stages)
            # publish is Cached, or ran again when the kill came between its rename and its
            # cache record: it is idempotent, the published files stay untouched
            assert stages["publish"] in ("Cached", "Completed"), (name, stages)
            assert file_times(name) == mtimes[name]
        else:
            assert stages["publish"] == "Completed", (name, stages)
        _same_outputs(reference_run[0], out, name)
    assert not _leftovers(out)


def test_rerun_with_one_new_scene_computes_only_that_scene(
    prefect_api, dask_scheduler, reference_run, scenes, tmp_path
) -> None:
    folder, aoi = scenes
    ref_out, _ = reference_run
    grown = tmp_path / "scenes"
    shutil.copytree(folder, grown)  # copy2 keeps mtimes: same cache keys
    out = tmp_path / "out"
    # an existing cluster; the mosaic task after the scene tasks
    settings = SegmentSettings(**CPU, dask_address=dask_scheduler, mosaic=True)
    segment_aoi(aoi=aoi, scenes=[str(grown / "a.tif"), str(grown / "b.tif")], out=out,
                settings=settings)  # fmt: skip
    two = json.loads((out / "run.json").read_text())["mosaic"]
    assert [s["scene"] for s in two["sources"]] == ["a", "b"]
    state = segment_aoi(
        aoi=aoi, scenes=[str(grown / "*.tif")], out=out, settings=settings, return_state=True
    )
    assert state.is_completed(), state.message
    states = _task_states(state.state_details.flow_run_id)
    assert {states[f"{s}-a"] for s in ("predict", "vectorize", "publish")} == {"Cached"}
    assert {states[f"{s}-b"] for s in ("predict", "vectorize", "publish")} == {"Cached"}
    assert {states[f"{s}-c"] for s in ("predict", "vectorize", "publish")} == {"Completed"}
    assert states["mosaic"] == "Completed", states  # a new scene: a new mosaic
    three = json.loads((out / "run.json").read_text())["mosaic"]
    assert [s["scene"] for s in three["sources"]] == ["a", "b", "c"]
    with rasterio.open(out / "mosaic/classes.tif") as ds:
        mosaic_px = ds.read(1)
    assert int((mosaic_px != 255).sum()) == sum(three["class_px"].values())
    # per-tile progress in the run's logs (the new scene's tiles)
    progress = _log_messages(state.state_details.flow_run_id, containing="tiles (100 %)")
    assert [m for m in progress if m.startswith("c: ")], progress
    # the same scenes again: every task, the mosaic included, from the cache
    state = segment_aoi(
        aoi=aoi, scenes=[str(grown / "*.tif")], out=out, settings=settings, return_state=True
    )
    states = _task_states(state.state_details.flow_run_id)
    assert states["mosaic"] == "Cached" and states["publish-c"] == "Cached", states
    for name in SCENE_NAMES:
        _same_outputs(ref_out, out, name)
    # outputs deleted by hand are not trusted from the cache: recomputed
    shutil.rmtree(out / "b")
    state = segment_aoi(
        aoi=aoi, scenes=[str(grown / "b.tif")], out=out, settings=settings, return_state=True
    )
    states = _task_states(state.state_details.flow_run_id)
    assert states["publish-b"] == "Completed" and states["predict-b"] == "Completed", states
    _same_outputs(ref_out, out, "b")


def test_deployment_runs_on_a_process_worker(prefect_api, scenes, tmp_path) -> None:
    folder, aoi = scenes
    out = tmp_path / "out"
    pool = "geoseg-test"
    params = {
        "aoi": str(aoi),
        "scenes": [str(folder / "a.tif")],
        "out": str(out),
        "settings": {"device": "cpu", "dask_workers": 1},
    }
    proc = geoseg_cli(
        "deploy",
        "--project-dir", REPO,
        "--pool", pool,
        "--name", "nightly",
        *(a for k, v in params.items() for a in ("--param", f"{k}={json.dumps(v)}")),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "deployed segment-aoi/nightly" in proc.stdout
    with get_client(sync_client=True) as client:
        deployment = client.read_deployment_by_name("segment-aoi/nightly")
    assert deployment.work_pool_name == pool
    assert [s.schedule.cron for s in deployment.schedules] == ["0 2 * * *"]
    assert deployment.parameters["out"] == str(out)

    worker_log = tmp_path / "worker.log"
    with worker_log.open("wb") as log:
        worker = subprocess.Popen(
            [BIN / "prefect", "worker", "start", "--pool", pool, "--type", "process"],
            env={**os.environ, "PREFECT_WORKER_QUERY_SECONDS": "1"},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            flow_run = run_deployment(
                "segment-aoi/nightly", timeout=300, poll_interval=1, as_subflow=False
            )
        finally:
            stop_process_group(worker)
    assert flow_run.state is not None and flow_run.state.is_completed(), (
        f"{flow_run.state}\n{worker_log.read_text()[-4000:]}"
    )
    with rasterio.open(folder / "a.tif") as src, rasterio.open(out / "a/classes.tif") as ds:
        assert ds.crs == src.crs
        col = (ds.transform.c - src.transform.c) / src.res[0]
        row = (src.transform.f - ds.transform.f) / src.res[1]
        assert col == pytest.approx(round(col), abs=1e-9)
        assert row == pytest.approx(round(row), abs=1e-9)
        assert ds.tags(ns="IMAGE_STRUCTURE").get("LAYOUT") == "COG"
    info = pyogrio.read_info(out / "a/polygons.gpkg", layer="landcover")
    assert info["features"] > 0
    assert json.loads((out / "run.json").read_text())["scenes"][0]["scene"] == "a"


def test_train_model_flow_writes_a_package(prefect_api, scenes, tmp_path) -> None:
    folder, _ = scenes
    labels_dir = folder.parent / "src-a"
    package = tmp_path / "tiny.geoseg"
    options = {
        "image": [str(folder / "a.tif")],
        "labels": [str(labels_dir / "labels.tif")],
        "out": str(package),
        "arch": "unet",
        "width": 0.125,
        "epochs": 1,
        "steps_per_epoch": 2,
        "batch_size": 2,
        "tile_size": 64,
        "val_block": 64,
        "threads": 1,
        "device": "cpu",
    }
    assert train_model(options=options) == package
    assert load_package(package).metadata.architecture.name == "unet"
    state = train_model(options={**options, "tile_sise": 64}, return_state=True)
    # named as the flow's options are named, not as `geoseg train` flags
    assert state.is_failed() and "ConfigError: tile_sise: unknown option" in state.message
