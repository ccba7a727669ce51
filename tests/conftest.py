"""Shared fixtures: synthetic scenes written once per session, the shipped demo model, helpers."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from geoseg.models import DEMO_MODEL
from tests.support.cli import geoseg_cli

if TYPE_CHECKING:
    from tests.support.prefect_server import PrefectServer

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")


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
    from tests.support.prefect_server import running_server

    try:
        with running_server(tmp_path_factory.mktemp("prefect-home")) as server:
            yield server
    except RuntimeError as exc:
        pytest.fail(str(exc))


@pytest.fixture(scope="module")
def prefect_api(prefect_server: PrefectServer) -> Iterator[str]:
    """The session's Prefect server, used by this module: PREFECT_API_URL points at it."""
    from tests.support.prefect_server import using_server

    with using_server(prefect_server) as url:
        yield url
