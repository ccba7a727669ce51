"""CLI error handling in-process: one actionable line, a non-zero exit code, no output files.

The battery of bad inputs and faults (AOI, scenes, model packages, output folder, disk full,
SIGKILL) is `tests/test_bad_inputs.py`; this module keeps what it does not cover.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from geoseg.cli import app
from tests.support.cli import geoseg_cli, write_geojson

runner = CliRunner()


def invoke(*args: str | Path):
    return runner.invoke(app, [str(a) for a in args])


def run_args(aoi: Path, scene: Path, model: Path, out: Path) -> list[str | Path]:
    return ["run", "--aoi", aoi, "--scenes", scene, "--model", model, "--out", out]


def assert_refused(result, out: Path, *fragments: str) -> None:
    assert result.exit_code != 0, result.output
    message = result.stderr.strip()
    assert message.startswith("error:"), message
    assert "Traceback" not in result.output and "Traceback" not in message
    for fragment in fragments:
        assert fragment in message, message
    assert not out.exists() or not any(out.rglob("*")), list(out.rglob("*"))


@pytest.fixture()
def out(tmp_path: Path) -> Path:
    return tmp_path / "out"


def test_aoi_not_a_polygon(scene_512, demo_model: Path, out: Path, tmp_path: Path) -> None:
    aoi = write_geojson(tmp_path / "aoi.geojson", [{"type": "Point", "coordinates": [1, 2]}])
    result = invoke(*run_args(aoi, scene_512.image_path, demo_model, out))
    assert_refused(result, out, str(aoi), "is a Point", "polygons")


def test_bad_tile_size_names_the_sizes_that_work(scene_512, demo_model: Path, out: Path) -> None:
    args = run_args(scene_512.aoi_path, scene_512.image_path, demo_model, out)
    result = invoke(*args, "--tile-size", "250")
    assert_refused(result, out, "--tile-size 250", "use 224 or 256")


def test_real_console_script_exit_code_and_debug(
    scene_512, demo_model: Path, tmp_path: Path
) -> None:
    aoi = tmp_path / "nope.geojson"
    args = run_args(aoi, scene_512.image_path, demo_model, tmp_path / "out")
    proc = geoseg_cli(*args)
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0, proc.stderr  # exactly one line
    debug = geoseg_cli("--debug", *args)
    assert debug.returncode == 2 and "Traceback" in debug.stderr
