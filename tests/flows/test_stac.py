"""`segment_aoi` over STAC items served by real servers, its scene tasks on a Dask worker process.

Three Sentinel-2 L2A items in the Earth Search layout (`tests.support.stac_items`: one COG per
band, stored with the +1000 DN offset their raster:bands declare, a 20 m SCL mask, item B with
a cloud), their files served by nginx (GDAL reads them through /vsicurl/) and searched through
``rustac serve``. Item A is also passed as an item URL whose asset hrefs carry a fake
signature (``?sig=...``), which must reach no log, no record and no server-side parameter.
The items are dated 10, 5 and 1 days before the module started, so rolling windows
(``stac_days``) select them. Scenes are 256 px synthetic landscapes.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyogrio
import pytest
import rasterio

pytest.importorskip("prefect", reason="Prefect is not installed: pip install 'geoseg[flows]'")
pytest.importorskip("prefect_dask", reason="prefect-dask is not installed: geoseg[flows]")

from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId

from flows.jobs import CACHE_DIR_NAME, INPUTS_DIR_NAME, KEY_FILE
from flows.segment import SegmentSettings, days_window, segment_aoi
from geoseg.config import RunSettings, StacQuery
from geoseg.models import DEMO_MODEL
from geoseg.pipeline.run import run as run_pipeline
from geoseg.synthetic import write_synthetic_scene
from tests.support.prefect_server import child_flow_runs, task_runs
from tests.support.servers import HttpServer
from tests.support.stac_items import earth_search_item, write_item, write_ndjson

pytestmark = pytest.mark.slow

COLLECTION = "sentinel-2-l2a"
ITEMS = {"S2A_T33UUP_A": 10, "S2A_T33UUP_B": 5, "S2A_T33UUP_C": 1}
"""Item id -> days before the module's start it was acquired."""
SIGNATURE = "sig=s3cr3t-signature"
CPU = {"device": "cpu", "block_size": 128}
STAGES = ("predict", "vectorize", "publish")


@dataclass(frozen=True)
class Catalogue:
    """The items: the AOI, item A's URL (signed hrefs), the STAC API root, the start time."""

    aoi: Path
    item_a_url: str
    api: str
    now: dt.datetime

    def query(self, **changes: Any) -> StacQuery:
        return StacQuery(api=self.api, collections=[COLLECTION], **changes)

    def window(self, from_days: float, to_days: float) -> str:
        """The datetime interval from ``from_days`` to ``to_days`` before the start."""
        return days_window(from_days - to_days, self.now - dt.timedelta(days=to_days))


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def catalogue(
    prefect_api: str,
    flow_http_server: HttpServer,
    flow_http_root: Path,
    module_stac_api: Callable[[Path], str],
    tmp_path_factory: pytest.TempPathFactory,
) -> Catalogue:
    """Items A, B (a cloud over part of the AOI), C served by nginx and the STAC API."""
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    src = tmp_path_factory.mktemp("stac-flow-src")
    served = flow_http_root / "stac-flow"
    items, aoi = [], None
    for i, (item_id, days) in enumerate(ITEMS.items()):
        scene = write_synthetic_scene(src / item_id, size_px=256, seed=31 + i)
        aoi = aoi or scene.aoi_path
        item = earth_search_item(
            scene.image_path,
            served / item_id,
            item_id=item_id,
            datetime=f"{now - dt.timedelta(days=days):%Y-%m-%dT%H:%M:%SZ}",
            href_base=f"{flow_http_server.url}/stac-flow/{item_id}",
            cloud_box=(60, 140, 60, 140) if item_id.endswith("B") else None,
        )
        items.append(item)
    signed = json.loads(json.dumps(items[0]))
    for entry in signed["assets"].values():
        entry["href"] += f"?{SIGNATURE}"
    write_item(signed, served / "A-signed.json")
    api = module_stac_api(write_ndjson(items, src / "items.ndjson"))
    assert aoi is not None
    return Catalogue(aoi, f"{flow_http_server.url}/stac-flow/A-signed.json", api, now)


@pytest.fixture(scope="module")
def dask_worker(prefect_api: str) -> Iterator[str]:
    """A Dask cluster of one worker process: the scene tasks run outside the flow's process."""
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
def first_run(
    catalogue: Catalogue, dask_worker: str, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, Any]:
    """Item A by its URL plus a search whose window (7 to 3 days ago) finds only item B."""
    out = tmp_path_factory.mktemp("stac-first") / "out"
    settings = SegmentSettings(
        **CPU,
        dask_address=dask_worker,
        stac=catalogue.query(datetime=catalogue.window(7, 3), max_cloud=50),
    )
    state = segment_aoi(
        aoi=catalogue.aoi,
        scenes=[catalogue.item_a_url],
        out=out,
        settings=settings,
        return_state=True,
    )
    assert state.is_completed(), state.message
    return out, state


# --------------------------------------------------------------------------- helpers


def _task_states(flow_run_id: Any) -> dict[str, str]:
    """Task run name -> state name of the flow run and its subflows, once all are final."""
    deadline = time.monotonic() + 30
    while True:
        runs = task_runs(flow_run_id)
        if all(r.state is not None and r.state.is_final() for r in runs) or (
            time.monotonic() > deadline
        ):
            return {r.name: r.state.name for r in runs if r.state is not None}
        time.sleep(0.2)


def _logs(flow_run_id: Any, *, containing: str, timeout_s: float = 30) -> list[str]:
    """Log lines of a flow run and its subflows (logs arrive in batches: wait for one)."""
    ids = [flow_run_id, *(c.id for c in child_flow_runs(flow_run_id))]
    deadline = time.monotonic() + timeout_s
    with get_client(sync_client=True) as client:
        while True:
            found = [
                log.message
                for log in client.read_logs(
                    log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=ids)), limit=200
                )
            ]
            if any(containing in m for m in found) or time.monotonic() > deadline:
                return found
            time.sleep(0.5)


def _scene_states(states: dict[str, str], name: str) -> set[str]:
    return {states[f"{stage}-{name}"] for stage in STAGES}


def _file_times(folder: Path) -> dict[str, int]:
    return {f.name: f.stat().st_mtime_ns for f in sorted(folder.iterdir())}


def _same_outputs(out_a: Path, out_b: Path, name: str) -> None:
    for raster in ("classes.tif", "confidence.tif"):
        with rasterio.open(out_a / name / raster) as a, rasterio.open(out_b / name / raster) as b:
            assert a.crs == b.crs and a.transform == b.transform, (name, raster)
            np.testing.assert_array_equal(a.read(), b.read(), err_msg=f"{name}/{raster}")
    layers = [
        pyogrio.read_dataframe(o / name / "polygons.gpkg", layer="landcover")
        for o in (out_a, out_b)
    ]
    assert sorted(g.wkb for g in layers[0].geometry) == sorted(g.wkb for g in layers[1].geometry)


# --------------------------------------------------------------------------- tests


def test_items_from_a_url_and_a_search_are_mapped_on_a_dask_worker(
    catalogue: Catalogue, first_run: tuple[Path, Any], tmp_path: Path
) -> None:
    out, state = first_run
    published = state.result()
    assert [p.result.scene for p in published] == ["S2A_T33UUP_A", "S2A_T33UUP_B"]
    assert all(p.worker for p in published), "predicted outside the Dask worker process"
    # the VRTs the workers read, beside the outputs
    assert sorted(p.name for p in (out / INPUTS_DIR_NAME).iterdir()) == [
        "S2A_T33UUP_A.vrt",
        "S2A_T33UUP_B.vrt",
    ]
    record = json.loads((out / "run.json").read_text())
    inputs = {s["scene"]: s["input"] for s in record["scenes"]}
    assert {i["kind"] for i in inputs.values()} == {"stac-item"}
    assert inputs["S2A_T33UUP_A"]["assets"]["red"]["href"].endswith("/B04.tif?<redacted>")
    assert inputs["S2A_T33UUP_B"]["cloud_mask"]["asset"] == "scl"
    masked = {s["scene"]: s["masked_px"] for s in record["scenes"]}
    assert masked["S2A_T33UUP_B"] > 0 and masked["S2A_T33UUP_A"] == 0, masked
    assert record["settings"]["stac"]["collections"] == [COLLECTION]

    # the search's summary line and the plan in the run log
    flow_run_id = state.state_details.flow_run_id
    logs = _logs(flow_run_id, containing="intersect the AOI")
    summary = [m for m in logs if "intersect the AOI" in m]
    assert summary and f"item(s) of {COLLECTION}" in summary[0], logs
    assert summary[0].endswith("using 1"), summary
    assert any("2 scene(s) cover the AOI (2 STAC item(s))" in m for m in logs), logs

    # the signature of item A's hrefs is nowhere: records, logs, the server's parameters
    (child,) = child_flow_runs(flow_run_id)
    stored = json.dumps(child.parameters)
    assert "?<redacted>" in stored and SIGNATURE not in stored
    assert not any(SIGNATURE in m for m in _logs(flow_run_id, containing="published"))
    assert SIGNATURE not in (out / "run.json").read_text()
    assert SIGNATURE in (out / INPUTS_DIR_NAME / "S2A_T33UUP_A.vrt").read_text()  # GDAL needs it

    # exactly what `geoseg run` makes of the same inputs, in this process
    reference = tmp_path / "cli"
    run_pipeline(
        RunSettings(
            aoi=catalogue.aoi,
            scenes=[catalogue.item_a_url],
            stac=catalogue.query(datetime=catalogue.window(7, 3), max_cloud=50),
            models=[DEMO_MODEL],
            out=reference,
            device="cpu",
            workers=0,
            block_size=128,
        )
    )
    for name in ("S2A_T33UUP_A", "S2A_T33UUP_B"):
        _same_outputs(reference, out, name)


def test_a_rerun_maps_only_new_items_and_remakes_deleted_outputs(
    catalogue: Catalogue, first_run: tuple[Path, Any], dask_worker: str, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    shutil.copytree(first_run[0], out)  # copy2 keeps mtimes
    mapped = {n: _file_times(out / n) for n in ("S2A_T33UUP_A", "S2A_T33UUP_B")}
    vrt_before = (out / INPUTS_DIR_NAME / "S2A_T33UUP_B.vrt").stat().st_mtime_ns
    # the nightly deployment's search: the last 7 days (B and the new C), plus item A
    settings = SegmentSettings(
        **CPU, dask_address=dask_worker, stac=catalogue.query(max_cloud=50), stac_days=7
    )

    def rerun() -> dict[str, str]:
        state = segment_aoi(
            aoi=catalogue.aoi,
            scenes=[catalogue.item_a_url],
            out=out,
            settings=settings,
            return_state=True,
        )
        assert state.is_completed(), state.message
        return _task_states(state.state_details.flow_run_id)

    states = rerun()
    assert _scene_states(states, "S2A_T33UUP_A") == {"Cached"}, states
    assert _scene_states(states, "S2A_T33UUP_B") == {"Cached"}, states
    assert _scene_states(states, "S2A_T33UUP_C") == {"Completed"}, states
    for name, times in mapped.items():
        assert _file_times(out / name) == times, f"{name} was published again"
    # the VRT was written again (its mtime is not part of the key) and still hit the cache
    assert (out / INPUTS_DIR_NAME / "S2A_T33UUP_B.vrt").stat().st_mtime_ns != vrt_before
    record = json.loads((out / "run.json").read_text())
    assert [s["scene"] for s in record["scenes"]] == [
        "S2A_T33UUP_A",
        "S2A_T33UUP_B",
        "S2A_T33UUP_C",
    ]

    # outputs a user deleted are made again, even though the result cache holds them
    (out / "S2A_T33UUP_B" / "preview.png").unlink()
    shutil.rmtree(out / "S2A_T33UUP_C")
    states = rerun()
    assert _scene_states(states, "S2A_T33UUP_A") == {"Cached"}, states
    assert _scene_states(states, "S2A_T33UUP_B") == {"Completed"}, states
    assert _scene_states(states, "S2A_T33UUP_C") == {"Completed"}, states
    for name in ("S2A_T33UUP_B", "S2A_T33UUP_C"):
        key_file = (out / name / KEY_FILE).read_text().splitlines()
        assert "preview.png" in key_file[1:] and "polygons.gpkg" in key_file[1:], key_file
        assert (out / name / "preview.png").is_file()
    _same_outputs(first_run[0], out, "S2A_T33UUP_B")


def test_a_rolling_window_without_items_maps_the_scenes_given_or_nothing(
    catalogue: Catalogue, first_run: tuple[Path, Any], dask_worker: str, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    settings = SegmentSettings(**CPU, stac=catalogue.query(), stac_days=0.5)  # C: 1 day ago
    state = segment_aoi(aoi=catalogue.aoi, out=out, settings=settings, return_state=True)
    assert state.is_completed(), state.message
    assert state.result() == []
    assert not out.exists(), "an output folder for nothing"
    flow_run_id = state.state_details.flow_run_id
    logs = _logs(flow_run_id, containing="nothing to map")
    assert any("no items of" in m and "nothing to map" in m for m in logs), logs
    assert not child_flow_runs(flow_run_id), "a scene subflow (and Dask cluster) for nothing"
    # with scenes given, an empty window maps those (item A: cached from the first run)
    with_scenes = tmp_path / "with-scenes"
    shutil.copytree(first_run[0], with_scenes)
    state = segment_aoi(
        aoi=catalogue.aoi,
        scenes=[catalogue.item_a_url],
        out=with_scenes,
        settings=settings.model_copy(update={"dask_address": dask_worker}),
        return_state=True,
    )
    assert state.is_completed(), state.message
    assert [p.result.scene for p in state.result()] == ["S2A_T33UUP_A"]
    assert _scene_states(_task_states(state.state_details.flow_run_id), "S2A_T33UUP_A") == {
        "Cached"
    }
    stac = json.loads((with_scenes / "run.json").read_text())["settings"]["stac"]
    assert stac["datetime"].count("/") == 1, stac  # the window searched, recorded
    # a fixed window without items is a user error, as in `geoseg run`
    fixed = SegmentSettings(**CPU, stac=catalogue.query(datetime=catalogue.window(30, 20)))
    state = segment_aoi(aoi=catalogue.aoi, out=out, settings=fixed, return_state=True)
    assert state.is_failed() and "no items of" in state.message, state.message
    assert not (out / CACHE_DIR_NAME).exists()
