"""Shared fixtures: synthetic scenes written once per session, the shipped demo model, helpers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from tests.prefect_server import PrefectServer

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")

REPO = Path(__file__).resolve().parents[1]
DEMO_MODEL = REPO / "geoseg" / "data" / "demo.geoseg"
SHARED_DATA = REPO.parent / "shared" / "data"


@pytest.fixture(scope="session")
def demo_model() -> Path:
    if not DEMO_MODEL.exists():
        pytest.fail(f"{DEMO_MODEL} is missing: run `make demo-model`")
    return DEMO_MODEL


@pytest.fixture(scope="session")
def scene_512(tmp_path_factory: pytest.TempPathFactory):
    """A 512 px synthetic scene (seed 11: not a training seed) with a nodata margin."""
    from geoseg.synthetic import write_synthetic_scene

    return write_synthetic_scene(
        tmp_path_factory.mktemp("scene11"), size_px=512, seed=11, nodata_margin_px=150
    )


@pytest.fixture(scope="session")
def scene_256(tmp_path_factory: pytest.TempPathFactory):
    """A 256 px synthetic scene (seed 11: not a training seed), no nodata margin."""
    from geoseg.synthetic import write_synthetic_scene

    return write_synthetic_scene(tmp_path_factory.mktemp("scene256"), size_px=256, seed=11)


@pytest.fixture(scope="session")
def run_256(tmp_path_factory: pytest.TempPathFactory, scene_256, demo_model: Path) -> Path:
    """The output folder of one good `geoseg run` on `scene_256`; copy it before changing it."""
    out = tmp_path_factory.mktemp("run256") / "out"
    geoseg_cli(
        "run", "--aoi", scene_256.aoi_path, "--scenes", scene_256.image_path,
        "--model", demo_model, "--out", out, "--device", "cpu", "--workers", "0",
        check=True,
    )  # fmt: skip
    return out


@pytest.fixture(scope="session")
def prefect_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrefectServer]:
    """One real Prefect server on loopback for the session, started by its first user."""
    from tests.prefect_server import running_server

    try:
        with running_server(tmp_path_factory.mktemp("prefect-home")) as server:
            yield server
    except RuntimeError as exc:
        pytest.fail(str(exc))


@pytest.fixture(scope="module")
def prefect_api(prefect_server: PrefectServer) -> Iterator[str]:
    """The session's Prefect server, used by this module: PREFECT_API_URL points at it."""
    from tests.prefect_server import using_server

    with using_server(prefect_server) as url:
        yield url


def geoseg_cli(
    *args: str | Path,
    check: bool = False,
    preexec_fn: Callable[[], None] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run the installed `geoseg` console script in a subprocess (the real CLI, exit codes too).

    ``preexec_fn`` runs in the child before `geoseg` starts (resource limits, another user).
    """
    exe = Path(sys.executable).with_name("geoseg")
    proc = subprocess.run(
        [str(exe), *map(str, args)],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
        preexec_fn=preexec_fn,
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"geoseg {args} failed:\n{proc.stdout}\n{proc.stderr}")
    return proc


def write_geojson(path: Path, geometries: list[dict | None], crs: str | None = None) -> Path:
    """A GeoJSON FeatureCollection of raw geometry dicts (optionally with a legacy crs member)."""
    doc: dict = {
        "type": "FeatureCollection",
        "features": [{"type": "Feature", "properties": {}, "geometry": g} for g in geometries],
    }
    if crs:
        doc["crs"] = {"type": "name", "properties": {"name": crs}}
    path.write_text(json.dumps(doc))
    return path
