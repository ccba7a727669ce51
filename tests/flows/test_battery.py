"""The bad-input battery through the Prefect flow `segment_aoi`, against a real Prefect server.

Every case of `tests.support.battery.CASES` maps onto the flow's parameters (AOI, scene,
model, output folder, `SegmentSettings` for tile size and overlap), so every case runs here.
Each one builds its bad input, runs the CLI in this process for the line it prints, then runs
the flow in this process into the same output folder, which holds an earlier good result: a
copy of one good flow run of the same scene (`flow_run_256`), so its persisted task results
under ``OUT/.geoseg-cache`` are there too. It checks that:

- the flow run ends Failed (not Crashed), on the server too, and its state message is the
  CLI's line in Prefect's framing (``Flow run encountered an exception: AoiError: <line>``),
  with options named as the flow's settings (``tile_size``, not ``--tile-size``): one line,
  no traceback;
- the exception the run raises in this process is that `GeosegError`;
- bad input is found by ``select-scenes`` in one attempt (no retries) and no scene subflow
  -- and so no Dask cluster -- was started;
- the output folder is byte-identical: no new scene folder or run.json, no temp or staging
  folder, and the result cache (where the flow persists its scene tasks' results) holds the
  earlier run's records unchanged and no new one.

Not here: the battery's faults that need control of a process (a file-size limit, an output
folder that root may not write to, SIGKILL) -- they hit the flow's scene tasks on Dask
workers, which `tests/flows/test_segment.py` covers for the kill -- and the self-intersecting
AOI, which is repaired rather than refused.

Run with ``-s`` to see each case's state message (lines starting with ``FLOW``).
"""

from __future__ import annotations

import logging
import re
import shutil
import time
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("prefect", reason="Prefect is not installed: pip install 'geoseg[flows]'")
pytest.importorskip("prefect_dask", reason="prefect-dask is not installed: geoseg[flows]")

from prefect.client.orchestration import get_client
from prefect.client.schemas.objects import StateType
from prefect.states import State

from flows.jobs import CACHE_DIR_NAME
from flows.segment import SegmentSettings, segment_aoi
from geoseg.errors import GeosegError
from tests.support.battery import (
    CASES,
    BadRun,
    Case,
    GoodInputs,
    error_line,
    run_in_process,
    snapshot,
    trap_marker,
)
from tests.support.prefect_server import child_flow_runs, task_runs

pytestmark = pytest.mark.slow

PREFECT_FRAMING = "Flow run encountered an exception: "
"""How Prefect starts the message of a flow run that raised (``<Type>: <message>`` follows)."""

TASK_RUNS_TIMEOUT_S = 30
"""Task run states reach the server as events; this long at most until they are there."""


def as_settings(cli_line: str) -> str:
    """The CLI's line as the flow says it: settings (``tile_size``) where the CLI has flags."""
    return re.sub(r"--([a-z][a-z-]*)", lambda m: m[1].replace("-", "_"), cli_line)


def flow_parameters(run: BadRun, out: Path) -> dict[str, Any]:
    """The `segment_aoi` parameters of a battery run (one worker: no cluster should start)."""
    unknown = {k for k, _ in run.settings} - set(SegmentSettings.model_fields)
    assert not unknown, f"settings the flow does not take: {unknown}"
    return {
        "aoi": run.aoi,
        "scenes": [str(run.scene)],
        "out": run.out or out,
        "model": run.model,
        "settings": SegmentSettings(device="cpu", dask_workers=1, **dict(run.settings)),
    }


def cache_records(found: dict[str, str]) -> dict[str, str]:
    """The entries of a `snapshot` that are the flow's persisted task results."""
    return {k: v for k, v in found.items() if k.startswith(f"{CACHE_DIR_NAME}/")}


def stored_state(state: State[Any]) -> State[Any]:
    """The flow run's final state as the server has it."""
    with get_client(sync_client=True) as client:
        stored = client.read_flow_run(state.state_details.flow_run_id).state
    assert stored is not None
    return stored


def finished_task_runs(flow_run_id: Any) -> list[tuple[str, str, int]]:
    """(task name, state name, run count) of the flow run's task runs once all are final.

    Task run states reach the server as events, a moment after the flow run's own state.
    """
    deadline = time.monotonic() + TASK_RUNS_TIMEOUT_S
    runs = task_runs(flow_run_id)
    while not (runs and all(r.state is not None and r.state.is_final() for r in runs)):
        if time.monotonic() > deadline:
            break
        time.sleep(0.2)
        runs = task_runs(flow_run_id)
    return sorted((r.name.rsplit("-", 1)[0], r.state_name or "", r.run_count) for r in runs)


@pytest.fixture()
def inputs(tmp_path: Path, scene_256, demo_model: Path) -> GoodInputs:
    """The good inputs, and an empty folder for the case's bad files."""
    work = tmp_path / "inputs"
    work.mkdir()
    return GoodInputs(scene_256.image_path, scene_256.aoi_path, demo_model, work)


@pytest.fixture(scope="module")
def flow_run_256(
    prefect_api: str, scene_256, demo_model: Path, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """The output folder of one good `segment_aoi` run on `scene_256`, cache records included.

    Its Dask cluster is one worker thread in this process: seconds to start, where a cluster
    of worker processes takes about 20 (each imports torch); the flow runs the same tasks.
    """
    from distributed import LocalCluster

    out = tmp_path_factory.mktemp("flow-run256") / "out"
    with LocalCluster(
        n_workers=1,
        threads_per_worker=1,
        processes=False,
        dashboard_address=None,
        silence_logs=logging.WARNING,
    ) as cluster:
        state = segment_aoi(
            aoi=scene_256.aoi_path,
            scenes=[str(scene_256.image_path)],
            out=out,
            model=demo_model,
            settings=SegmentSettings(device="cpu", dask_address=cluster.scheduler_address),
            return_state=True,
        )
    assert state.is_completed(), state.message
    assert (out / "run.json").is_file() and any((out / CACHE_DIR_NAME).iterdir())
    return out


@pytest.fixture()
def earlier(tmp_path: Path, flow_run_256: Path) -> tuple[Path, dict[str, str]]:
    """An output folder holding a copy of an earlier good flow run, and its snapshot."""
    out = tmp_path / "out"
    shutil.copytree(flow_run_256, out)
    return out, snapshot(out)


@pytest.mark.usefixtures("prefect_api")
@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_fails_the_flow_run_with_the_cli_line(
    case: Case,
    inputs: GoodInputs,
    earlier: tuple[Path, dict[str, str]],
    capfd: pytest.CaptureFixture[str],
    pytestconfig: pytest.Config,
) -> None:
    out, before = earlier
    run = case.build(inputs)
    cli = error_line(run_in_process(run.cli_args(out), capfd), names=run.names, says=case.says)
    line = as_settings(cli.removeprefix("error: "))

    state = segment_aoi(**flow_parameters(run, out), return_state=True)

    assert state.is_failed(), (state.type, state.message)
    raised = state.result(raise_on_failure=False)
    assert isinstance(raised, GeosegError), repr(raised)
    assert str(raised) == line
    stored = stored_state(state)
    assert stored.type == StateType.FAILED, (stored.type, stored.message)
    assert stored.message == f"{PREFECT_FRAMING}{type(raised).__name__}: {line}"
    assert "\n" not in stored.message and "Traceback" not in stored.message

    flow_run_id = state.state_details.flow_run_id
    assert finished_task_runs(flow_run_id) == [("select-scenes", "Failed", 1)]
    assert not child_flow_runs(flow_run_id), "the scenes' subflow (and its Dask cluster) started"

    after = snapshot(out)
    assert cache_records(after) == cache_records(before), "the result cache changed"
    assert after == before
    if run.out is not None:
        assert not run.out.exists()
    assert not trap_marker(inputs).exists(), "something unpickled the package"
    if pytestconfig.getoption("capture") == "no":
        with capfd.disabled():
            print(f"\nFLOW | {case.id} | {stored.type.value} | {stored.message}")
