"""A flow run whose process was killed is set Crashed by the heartbeat automation, on a real
Prefect server; a live one beside it is left Running.

Two flow runs of a small flow (no torch, no Dask: what is tested is Prefect's part) run in
processes of their own with heartbeats every 30 s (``PREFECT_FLOWS_HEARTBEAT_FREQUENCY``,
Prefect's minimum) and a tag of this test, which the automation made by
`flows.deploy.crash_automation` matches. Once the server holds the first heartbeat of each,
one process group is SIGKILLed. The automation is the one `geoseg deploy` creates, with a
45 s window instead of 3 heartbeat periods (90 s here, 180 s with prefect.yaml's 60 s), so
the test takes about a minute; the live run's heartbeats every 30 s keep it out of reach.
"""

from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("prefect", reason="Prefect is not installed: pip install 'geoseg[flows]'")

from prefect.client.orchestration import get_client
from prefect.client.schemas.objects import StateType
from prefect.events.filters import EventFilter, EventNameFilter, EventResourceFilter

from flows.deploy import crash_automation, ensure_automation
from tests.support.prefect_server import REPO, stop_process_group

pytestmark = pytest.mark.slow

HEARTBEAT_S = 30
WITHIN_S = 45
LAG_S = 30
"""Slack after the window: the server evaluates proactive triggers every 5 s, then acts."""
START_TIMEOUT_S = 120

SLEEPER = """
import sys, time
from pathlib import Path
from prefect import flow, tags
from prefect.runtime import flow_run

@flow(name="heartbeat-sleeper")
def sleeper(marker: str, stop: str) -> str:
    Path(marker).write_text(str(flow_run.id))
    deadline = time.monotonic() + 600
    while not Path(stop).exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    return "done"

if __name__ == "__main__":
    with tags(sys.argv[1]):
        sleeper(sys.argv[2], sys.argv[3])
"""


def _start(script: Path, tag: str, marker: Path, stop: Path, log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(
            [sys.executable, str(script), tag, str(marker), str(stop)],
            cwd=REPO,
            env={**os.environ, "PREFECT_FLOWS_HEARTBEAT_FREQUENCY": str(HEARTBEAT_S)},
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def _heartbeats(client: Any, flow_run_id: str) -> int:
    page = client.read_events(
        filter=EventFilter(
            event=EventNameFilter(name=["prefect.flow-run.heartbeat"]),
            resource=EventResourceFilter(id=[f"prefect.flow-run.{flow_run_id}"]),
        ),
        limit=10,  # the client's default (100) is over the server's maximum (50)
    )
    return len(page.events)


def _state(client: Any, flow_run_id: str) -> Any:
    return client.read_flow_run(uuid.UUID(flow_run_id)).state


def test_a_killed_flow_run_is_set_crashed_and_a_live_one_is_not(
    prefect_api: str, tmp_path: Path
) -> None:
    tag = f"geoseg-heartbeat-{uuid.uuid4().hex[:8]}"
    automation_id = ensure_automation(
        crash_automation(dt.timedelta(seconds=WITHIN_S), tag=tag, name=f"test {tag}")
    )
    script = tmp_path / "sleeper.py"
    script.write_text(textwrap.dedent(SLEEPER))
    stop = tmp_path / "stop"
    procs = {
        name: _start(script, tag, tmp_path / f"{name}.id", stop, tmp_path / f"{name}.log")
        for name in ("killed", "alive")
    }
    try:
        with get_client(sync_client=True) as client:
            ids: dict[str, str] = {}
            deadline = time.monotonic() + START_TIMEOUT_S
            while len(ids) < 2 or not all(_heartbeats(client, i) for i in ids.values()):
                for name, proc in procs.items():
                    marker = tmp_path / f"{name}.id"
                    if name not in ids and marker.is_file() and marker.read_text():
                        ids[name] = marker.read_text()
                    if proc.poll() is not None or time.monotonic() > deadline:
                        log = (tmp_path / f"{name}.log").read_text(errors="replace")[-3000:]
                        pytest.fail(f"{name}: no heartbeat before it ended or timed out:\n{log}")
                time.sleep(0.5)
            assert _state(client, ids["killed"]).type == StateType.RUNNING

            os.killpg(procs["killed"].pid, signal.SIGKILL)
            procs["killed"].wait()
            killed_at = time.monotonic()
            while (state := _state(client, ids["killed"])).type != StateType.CRASHED:
                assert state.type == StateType.RUNNING, state
                if time.monotonic() - killed_at > WITHIN_S + LAG_S:
                    pytest.fail(f"still {state.type.value} {WITHIN_S + LAG_S} s after the kill")
                time.sleep(1)
            crashed_after = time.monotonic() - killed_at
            print(f"\nHEARTBEAT | crashed {crashed_after:.0f} s after the kill")
            assert "No heartbeat for 45 s" in (state.message or ""), state.message
            assert crashed_after >= WITHIN_S - 10, f"crashed after {crashed_after:.0f} s only"

            # the live run kept sending heartbeats: still Running, and it ends Completed
            assert _state(client, ids["alive"]).type == StateType.RUNNING
            stop.write_text("")
            assert procs["alive"].wait(timeout=60) == 0
            deadline = time.monotonic() + 30
            while (state := _state(client, ids["alive"])).type != StateType.COMPLETED:
                assert time.monotonic() < deadline, state
                time.sleep(0.5)
    finally:
        stop.write_text("")
        for proc in procs.values():
            stop_process_group(proc, timeout_s=10)
        with get_client(sync_client=True) as client:
            client.delete_automation(automation_id)
