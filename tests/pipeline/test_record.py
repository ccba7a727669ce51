"""run.json: what a run did, on what, with which model and settings, in which versions."""

from __future__ import annotations

import json
from pathlib import Path

from geoseg.config import RunSettings
from geoseg.io.outputs import CLASSES_NAME, RUN_JSON


def test_run_json_records_inputs_model_resolved_settings_and_outputs(
    run_256: Path, scene_256, demo_model: Path
) -> None:
    doc = json.loads((run_256 / RUN_JSON).read_text())
    assert doc["geoseg_run"] == 1
    assert doc["inputs"] == {
        "aoi": str(scene_256.aoi_path),
        "scenes": [str(scene_256.image_path)],
        "stac": None,
    }
    assert doc["model"]["path"] == str(demo_model) and len(doc["model"]["sha256"]) == 64
    assert doc["ensemble"] == []
    settings = doc["settings"]
    assert set(RunSettings.model_fields) <= set(settings)  # every setting, as given
    resolved = settings["resolved"]  # and as run: package defaults filled in, device chosen
    assert resolved["device"] == "cpu" and resolved["tta_transforms"] == 1
    assert resolved["tile_px"] > 0 and resolved["batch_size"] > 0 and resolved["overlap_px"] >= 0
    assert {"geoseg", "torch", "gdal", "rasterio"} <= set(doc["versions"])
    (scene,) = doc["scenes"]
    assert scene["scene"] == "scene" and scene["outputs"]["classes"].endswith(CLASSES_NAME)
    assert scene["tiles"] >= 1 and scene["valid_px"] == sum(scene["class_px"].values())
    assert {"predict", "model", "cog", "vectorize"} <= set(scene["timings_s"])
    assert doc["mosaics"] == [] and doc["timings_s"]["total"] > 0
