"""Every listed bad input: one actionable line, a non-zero exit code, and no output files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyogrio.raw
import pytest
import rasterio
import shapely
from typer.testing import CliRunner

from geoseg.cli import app
from tests.conftest import geoseg_cli, write_geojson

runner = CliRunner()

SQUARE = {"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [1, 1], [0, 1], [0, 0]]]}


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


def test_aoi_missing(scene_512, demo_model: Path, out: Path, tmp_path: Path) -> None:
    aoi = tmp_path / "nope.geojson"
    result = invoke(*run_args(aoi, scene_512.image_path, demo_model, out))
    assert_refused(result, out, str(aoi), "AOI file not found", "--aoi")


def test_aoi_unreadable(scene_512, demo_model: Path, out: Path, tmp_path: Path) -> None:
    aoi = tmp_path / "aoi.geojson"
    aoi.write_bytes(b"\x00\x01 this is not json")
    result = invoke(*run_args(aoi, scene_512.image_path, demo_model, out))
    assert_refused(result, out, str(aoi), "cannot read the AOI")


@pytest.mark.filterwarnings("ignore:'crs' was not provided")
def test_aoi_without_crs(scene_512, demo_model: Path, out: Path, tmp_path: Path) -> None:
    aoi = tmp_path / "aoi.shp"
    pyogrio.raw.write(
        aoi, np.array([shapely.to_wkb(shapely.box(0, 0, 1, 1))], dtype=object), [], [],
        geometry_type="Polygon", crs=None, driver="ESRI Shapefile",
    )  # fmt: skip
    assert not aoi.with_suffix(".prj").exists()
    result = invoke(*run_args(aoi, scene_512.image_path, demo_model, out))
    assert_refused(result, out, str(aoi), "no CRS", ".prj")


@pytest.mark.parametrize("geometries", [[], [None]], ids=["no-features", "null-geometry"])
def test_aoi_empty(scene_512, demo_model: Path, out: Path, tmp_path: Path, geometries) -> None:
    aoi = write_geojson(tmp_path / "aoi.geojson", geometries)
    result = invoke(*run_args(aoi, scene_512.image_path, demo_model, out))
    assert_refused(result, out, str(aoi), "no geometry")


def test_aoi_invalid_geometry(scene_512, demo_model: Path, out: Path, tmp_path: Path) -> None:
    bowtie = {"type": "Polygon", "coordinates": [[[0, 0], [1, 1], [1, 0], [0, 1], [0, 0]]]}
    aoi = write_geojson(tmp_path / "aoi.geojson", [bowtie])
    result = invoke(*run_args(aoi, scene_512.image_path, demo_model, out))
    assert_refused(result, out, str(aoi), "invalid polygon", "Self-intersection", "Fix geometries")


def test_aoi_not_a_polygon(scene_512, demo_model: Path, out: Path, tmp_path: Path) -> None:
    aoi = write_geojson(tmp_path / "aoi.geojson", [{"type": "Point", "coordinates": [1, 2]}])
    result = invoke(*run_args(aoi, scene_512.image_path, demo_model, out))
    assert_refused(result, out, str(aoi), "is a Point", "polygons")


def test_aoi_outside_every_scene(scene_512, demo_model: Path, out: Path, tmp_path: Path) -> None:
    aoi = write_geojson(tmp_path / "aoi.geojson", [SQUARE])  # 0..1 deg E/N: far from the scene
    result = invoke(*run_args(aoi, scene_512.image_path, demo_model, out))
    assert_refused(result, out, str(aoi), "does not cover any pixel", "scene.tif")


def test_scene_unreadable(scene_512, demo_model: Path, out: Path, tmp_path: Path) -> None:
    scene = tmp_path / "broken.tif"
    scene.write_bytes(b"II*\x00 truncated")
    result = invoke(*run_args(scene_512.aoi_path, scene, demo_model, out))
    assert_refused(result, out, str(scene), "cannot read the scene")


def test_scene_missing(scene_512, demo_model: Path, out: Path, tmp_path: Path) -> None:
    scene = tmp_path / "missing.tif"
    result = invoke(*run_args(scene_512.aoi_path, scene, demo_model, out))
    assert_refused(result, out, str(scene), "scene not found")


def test_band_mismatch(scene_512, demo_model: Path, out: Path, tmp_path: Path) -> None:
    scene = tmp_path / "rgb.tif"
    with rasterio.open(scene_512.image_path) as src:
        profile = {**src.profile, "count": 3}
        data = src.read([1, 2, 3])
    with rasterio.open(scene, "w", **profile) as dst:
        dst.write(data)
    result = invoke(*run_args(scene_512.aoi_path, scene, demo_model, out))
    assert_refused(result, out, str(scene), "has 3 band(s)", "needs 4")


def test_dtype_and_gsd_mismatch(scene_512, demo_model: Path, out: Path, tmp_path: Path) -> None:
    scene = tmp_path / "float.tif"
    with rasterio.open(scene_512.image_path) as src:
        profile = {**src.profile, "dtype": "float32", "nodata": None}
        data = src.read().astype("float32")
    with rasterio.open(scene, "w", **profile) as dst:
        dst.write(data)
    result = invoke(*run_args(scene_512.aoi_path, scene, demo_model, out))
    assert_refused(result, out, str(scene), "dtype float32", "uint16")
    coarse = tmp_path / "coarse.tif"
    with rasterio.open(scene_512.image_path) as src:
        t = src.transform
        profile = {**src.profile, "transform": rasterio.Affine(60, 0, t.c, 0, -60, t.f)}
        data = src.read()
    with rasterio.open(coarse, "w", **profile) as dst:
        dst.write(data)
    result = invoke(*run_args(scene_512.aoi_path, coarse, demo_model, out))
    assert_refused(result, out, str(coarse), "ground sample distance 60.00 m", "resample")


def test_output_dir_not_writable(scene_512, demo_model: Path, tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    out = blocker / "out"
    result = invoke(*run_args(scene_512.aoi_path, scene_512.image_path, demo_model, out))
    assert_refused(result, out, str(out), "not writable", "--out")
    assert blocker.read_text() == "not a folder"


def test_model_missing(scene_512, out: Path, tmp_path: Path) -> None:
    model = tmp_path / "nope.geoseg"
    result = invoke(*run_args(scene_512.aoi_path, scene_512.image_path, model, out))
    assert_refused(result, out, str(model), "model package not found")


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
