"""A real Prefect server on loopback for the flow tests, shared by every module of a session.

`running_server` starts ``prefect server start`` on a free port with its own PREFECT_HOME
and stops it (the conftest's session fixture ``prefect_server``); `using_server` points this
process -- and the processes it starts: flow runs, Dask workers, Prefect workers -- at it
while one module runs (the module fixture ``prefect_api``), so modules that never ask for the
server see no Prefect settings at all. Prefect is imported only here, lazily, so that
collecting the tests loads no Prefect for the modules that do not need it.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

BIN = Path(sys.executable).parent
REPO = Path(__file__).resolve().parents[2]
SERVER_START_TIMEOUT_S = 180


@dataclass(frozen=True)
class PrefectServer:
    """A started server: its API URL and its PREFECT_HOME (database, server.log)."""

    url: str
    home: Path


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def healthy(url: str) -> bool:
    """Whether the API at ``url`` answers its health check."""
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


def stop_process_group(proc: subprocess.Popen[bytes], timeout_s: float = 20) -> None:
    """SIGTERM, then SIGINT, then SIGKILL to the process group (a worker may need all)."""
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGKILL):
        if proc.poll() is not None:
            return
        os.killpg(proc.pid, sig)
        try:
            proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            continue


def drain_prefect_clients() -> None:
    """Send this process's queued logs and events while the server is still up (else they
    are retried against a stopped server when the interpreter exits)."""
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker

    APILogWorker.drain_all(timeout=10)
    EventsWorker.drain_all(timeout=10)


def client_env(server: PrefectServer) -> dict[str, str]:
    """The environment of a process that talks to ``server``."""
    return {
        "PREFECT_HOME": str(server.home),
        "PREFECT_API_URL": server.url,
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_LOGGING_LEVEL": "INFO",
        # subprocesses (flow runs, Dask workers) import the flows package from the repo
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
    }


@contextmanager
def running_server(home: Path) -> Iterator[PrefectServer]:
    """``prefect server start`` on a free loopback port with PREFECT_HOME ``home``."""
    url = f"http://127.0.0.1:{free_port()}/api"
    port = url.rsplit(":", 1)[1].split("/", maxsplit=1)[0]
    server = PrefectServer(url, home)
    log_path = home / "server.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [BIN / "prefect", "server", "start", "--host", "127.0.0.1", "--port", port],
            env={**os.environ, **client_env(server)},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            deadline = time.monotonic() + SERVER_START_TIMEOUT_S
            while not healthy(url):
                if proc.poll() is not None or time.monotonic() > deadline:
                    tail = log_path.read_text(errors="replace")[-4000:]
                    raise RuntimeError(f"prefect server did not start:\n{tail}")
                time.sleep(0.5)
            yield server
        finally:
            stop_process_group(proc)


@contextmanager
def using_server(server: PrefectServer) -> Iterator[str]:
    """This process and its children use ``server`` meanwhile; yields the API URL.

    On the way out the queued logs and events are sent and the environment is restored.
    """
    from prefect.settings import PREFECT_API_URL, temporary_settings

    env = client_env(server)
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        with temporary_settings(updates={PREFECT_API_URL: server.url}):
            yield server.url
    finally:
        drain_prefect_clients()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def child_flow_runs(flow_run_id: Any) -> list[Any]:
    """The subflow runs of a flow run, as the server has them."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterParentFlowRunId

    with get_client(sync_client=True) as client:
        return client.read_flow_runs(
            flow_run_filter=FlowRunFilter(
                parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=[flow_run_id])
            )
        )


def task_runs(flow_run_id: Any) -> list[Any]:
    """The task runs of a flow run and of its subflow runs."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    ids = [flow_run_id, *(c.id for c in child_flow_runs(flow_run_id))]
    with get_client(sync_client=True) as client:
        return client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=ids)), limit=200
        )
