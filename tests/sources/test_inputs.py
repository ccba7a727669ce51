"""What --scenes names: rasters, folders, item files of every shape, each input once."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.enums import Resampling

from geoseg.config import RunSettings
from geoseg.errors import IncompatibleSceneError, SceneError, StacError
from geoseg.models import DEMO_MODEL
from geoseg.pipeline.run import run
from geoseg.sources.inputs import scene_inputs
from geoseg.sources.items import StacItem
from tests.support.stac_items import (
    earth_search_item,
    write_item,
    write_item_collection,
    write_ndjson,
)


@pytest.fixture(scope="module")
def items(scene_512, tmp_path_factory: pytest.TempPathFactory) -> list[dict]:
    folder = tmp_path_factory.mktemp("items")
    return [
        earth_search_item(
            scene_512.image_path, folder / "a", item_id="A", datetime="2024-06-01T00:00:00Z"
        ),
        earth_search_item(
            scene_512.image_path, folder / "b", item_id="B", datetime="2024-06-03T00:00:00Z"
        ),
        earth_search_item(
            scene_512.image_path, folder / "c", item_id="C", datetime="2024-06-02T00:00:00Z"
        ),
    ]


def ids(inputs) -> list[str]:
    return [i.id if isinstance(i, StacItem) else Path(i).name for i in inputs]


def test_item_documents_of_every_shape(items, scene_512, tmp_path: Path) -> None:
    single = write_item(items[0], tmp_path / "one.json")
    ndjson = write_ndjson(items, tmp_path / "all.ndjson")
    collection = write_item_collection(items[1:], tmp_path / "some.geojson")
    assert ids(scene_inputs([single])) == ["A"]
    assert ids(scene_inputs([ndjson])) == ["A", "B", "C"]
    assert ids(scene_inputs([collection])) == ["B", "C"]
    # the same item twice (two documents) and the same raster twice are run once
    mixed = scene_inputs([single, ndjson, scene_512.image_path, str(scene_512.image_path)])
    assert ids(mixed) == ["A", "B", "C", "scene.tif"]
    assert ids(scene_inputs([ndjson], newest=2)) == ["B", "C"]  # by item datetime


def test_a_folder_holds_rasters_and_item_json(items, scene_512, tmp_path: Path) -> None:
    (tmp_path / "scene.tif").write_bytes(scene_512.image_path.read_bytes())
    write_item(items[2], tmp_path / "c.json")
    (tmp_path / "notes.json").write_text(json.dumps({"not": "stac"}))
    assert ids(scene_inputs([tmp_path])) == ["scene.tif", "C"]
    with pytest.raises(StacError, match="line 1 is not JSON"):
        bad = tmp_path / "bad.ndjson"
        bad.write_text("{oops\n")
        scene_inputs([bad])
    with pytest.raises(SceneError, match="scene not found"):
        scene_inputs([tmp_path / "missing.tif"])


def test_a_20m_stacked_scene_is_resampled_and_no_resample_refuses_it(
    scene_512, tmp_path: Path
) -> None:
    coarse = tmp_path / "scene20.tif"
    with rasterio.open(scene_512.image_path) as src:
        profile = src.profile | {
            "width": src.width // 2,
            "height": src.height // 2,
            "transform": src.transform @ src.transform.scale(2),
        }
        data = src.read(
            out_shape=(src.count, src.height // 2, src.width // 2), resampling=Resampling.average
        )
        with rasterio.open(coarse, "w", **profile) as dst:
            dst.write(data)
            dst.scales, dst.offsets = src.scales, src.offsets
    settings = RunSettings(
        aoi=scene_512.aoi_path,
        scenes=[str(coarse)],
        models=[DEMO_MODEL],
        out=tmp_path / "out",
        workers=0,
    )
    report = run(settings)
    with rasterio.open(report.scenes[0].outputs["classes"]) as ds:
        assert ds.res == (10.0, 10.0)
        classes = ds.read(1)
    assert (classes != 255).mean() > 0.5
    assert report.scenes[0].input["grid"]["native_gsd_m"] == 20.0
    with pytest.raises(IncompatibleSceneError, match="--no-resample is set; drop it"):
        run(settings.model_copy(update={"resample": False, "out": tmp_path / "o2"}))
    assert np.isfinite(report.pixels_per_second)
