"""`geoseg vectorize` and `geoseg run` on block-wise vectorization (the CLI over the file stage)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
from typer.testing import CliRunner

from geoseg.classes import ClassInfo
from geoseg.cli import app
from geoseg.geo.grid import BlockGrid
from geoseg.io.outputs import classes_tags
from geoseg.models import DEMO_MODEL
from geoseg.vectorize import Connectivity, polygonize_array
from tests.support.gpkg import read_layer
from tests.support.polygons import assert_same_polygons, gdal_polygonize_file, match
from tests.support.rasters import TRANSFORM, write_tif

runner = CliRunner()


def test_cli_vectorize_on_a_cluster(client, tifs, tmp_path: Path) -> None:
    _, array = tifs["synthetic_landscape"]
    named = (ClassInfo(0, "water", "#2b6cb0"), ClassInfo(1, "forest", "#1e5631"))
    folder = tmp_path / "scene7"
    folder.mkdir()
    tif = write_tif(folder / "classes.tif", array)
    with rasterio.open(tif, "r+") as ds:
        ds.update_tags(**classes_tags(named))
    confidence = np.full(array.shape, 80, dtype=np.uint8)
    conf_tif = write_tif(folder / "confidence.tif", confidence, nodata=None)
    out = tmp_path / "out" / "polygons.gpkg"
    out.parent.mkdir()
    args = [
        "vectorize", str(tif), "--out", str(out), "--confidence", str(conf_tif),
        "--connectivity", "8", "--block-size", "100",
        "--dask-address", client.scheduler.address,
    ]  # fmt: skip
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "polygons" in result.stdout and "30 block(s) on 2 Dask workers" in result.stdout
    geoms, columns, info = read_layer(out)
    assert info["geometry_type"] == "MultiPolygon"
    assert sorted(p.name for p in out.parent.iterdir()) == ["polygons.gpkg", "polygons.qml"]
    names = dict(zip(columns["class_id"].tolist(), columns["class_name"], strict=True))
    assert names[0] == "water" and names[1] == "forest"
    assert all(names[c] == f"class {c}" for c in names if c > 1)
    assert set(columns["scene"]) == {"scene7"}
    assert set(columns["mean_confidence"]) == {80.0}
    single = polygonize_array(array, TRANSFORM, connectivity=Connectivity.EIGHT)
    assert_same_polygons(geoms, single.geometry)


def test_cli_vectorize_refuses_bad_input_in_one_line(tifs, tmp_path: Path) -> None:
    tif, _ = tifs["river"]
    out = tmp_path / "p.gpkg"
    for args, fragment in [
        (["vectorize", str(tmp_path / "missing.tif"), "--out", str(out)], "missing.tif"),
        (["vectorize", str(tif), "--out", str(out), "--connectivity", "6"], "--connectivity"),
        (["vectorize", str(tif), "--out", str(out), "--block-size", "0"], "--block-size"),
        (["vectorize", str(tif), "--out", str(tmp_path / "p.shp")], ".gpkg"),
    ]:
        result = runner.invoke(app, args)
        assert result.exit_code != 0
        assert result.stderr.startswith("error:") and fragment in result.stderr, result.stderr
        assert "Traceback" not in result.output
    assert list(tmp_path.iterdir()) == []


@pytest.mark.skipif(not DEMO_MODEL.exists(), reason="demo model not built (make demo-model)")
def test_cli_vectorize_with_model_package(tifs, tmp_path: Path) -> None:
    from geoseg.models.package import load_package

    tif, _ = tifs["noise"]
    out = tmp_path / "p.gpkg"
    result = runner.invoke(app, ["vectorize", str(tif), "--out", str(out), "--model", DEMO_MODEL])
    assert result.exit_code == 0, result.output
    package = load_package(DEMO_MODEL)
    _, columns, _ = read_layer(out)
    names = {c.id: c.name for c in package.metadata.class_infos()}
    assert [names[c] for c in columns["class_id"]] == list(columns["class_name"])
    assert set(columns["model_sha256"]) == {package.sha256}


@pytest.mark.slow
def test_geoseg_run_polygons_match_gdal(
    *,
    client,
    scene_512,
    demo_model: Path,
    gdal_polygonize: str,
    tmp_path: Path,
) -> None:
    """`geoseg run` vectorizes with the same function: blocks on Dask, gdal's polygons."""
    out = tmp_path / "run"
    args = [
        "run", "--aoi", str(scene_512.aoi_path), "--scenes", str(scene_512.image_path),
        "--model", str(demo_model), "--out", str(out), "--device", "cpu",
        "--block-size", "128", "--dask-address", client.scheduler.address,
    ]  # fmt: skip
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    scene_dir = out / "scene"
    with rasterio.open(scene_dir / "classes.tif") as ds:
        classes = ds.read(1)
        transform = ds.transform
    with rasterio.open(scene_dir / "confidence.tif") as ds:
        confidence = ds.read(1).astype(float)
        confidence[ds.read_masks(1) == 0] = np.nan
    assert len(BlockGrid(*classes.shape, 128)) > 4
    geoms, columns, _ = read_layer(scene_dir / "polygons.gpkg")
    gdal_geoms, gdal_values = gdal_polygonize_file(
        gdal_polygonize, scene_dir / "classes.tif", tmp_path
    )
    i, j = assert_same_polygons(geoms, gdal_geoms)
    assert np.array_equal(columns["class_id"][i], gdal_values[j])
    single = polygonize_array(classes, transform, confidence=confidence)
    i, j = match(geoms, single.geometry)
    assert np.array_equal(columns["mean_confidence"][i], single.mean_confidence[j])
    assert np.array_equal(columns["pixel_count"][i], single.pixel_count[j])
