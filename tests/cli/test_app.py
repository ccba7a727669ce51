"""`geoseg demo` and `geoseg model info`: the embedded default and package inspection."""

from __future__ import annotations

import json
from pathlib import Path

import rasterio

from geoseg.synthetic import SYNTHETIC_CLASSES
from tests.support.cli import geoseg_cli


def test_demo_writes_inputs_and_results_like_run(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    proc = geoseg_cli(
        "demo", "--out", out, "--size", "384", "--seed", "5", "--device", "cpu", check=True
    )
    for name in ("scene.tif", "labels.tif", "aoi.geojson"):
        assert (out / "inputs" / name).is_file()
    for name in ("classes.tif", "confidence.tif", "polygons.gpkg"):
        assert (out / "scene" / name).is_file()
    with (
        rasterio.open(out / "scene/classes.tif") as ds,
        rasterio.open(out / "inputs/scene.tif") as s,
    ):
        assert ds.crs == s.crs
        assert ds.width < s.width and ds.height < s.height  # the AOI window, not the scene
    doc = json.loads((out / "run.json").read_text())
    assert doc["inputs"]["aoi"] == str(out / "inputs/aoi.geojson")
    assert "mIoU" in proc.stdout and "Mpx/s" in proc.stdout
    assert f"geoseg run --aoi {out / 'inputs/aoi.geojson'}" in proc.stdout
    miou = float(proc.stdout.split("mIoU ")[1].split(",")[0])
    assert miou >= 0.75


def test_model_info_prints_classes_bands_and_metrics(demo_model: Path) -> None:
    proc = geoseg_cli("model", "info", demo_model, check=True)
    for c in SYNTHETIC_CLASSES:
        assert c.name in proc.stdout and c.color in proc.stdout
    for text in ("sha256", "nir", "GSD 10 m", "validation_miou", "smp-unet"):
        assert text in proc.stdout, text
    as_json = json.loads(geoseg_cli("model", "info", demo_model, "--json", check=True).stdout)
    assert as_json["gsd_m"] == 10.0
    assert [c["name"] for c in as_json["classes"]] == [c.name for c in SYNTHETIC_CLASSES]
