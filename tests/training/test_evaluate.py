"""`evaluate`: the same prediction as `geoseg run`, scored; the side-by-side picture."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
from PIL import Image

from geoseg.synthetic import SYNTHETIC_CLASSES
from geoseg.training.loop import train
from tests.support.training import tiny_settings


@pytest.mark.parametrize("n_models", [1, 2])
def test_evaluate_scores_the_same_prediction_as_run(scenes, tmp_path: Path, n_models) -> None:
    """`evaluate` on a window == `geoseg run` over that window scored against the labels,
    for one model and for an ensemble (probabilities averaged, as a repeated --model)."""
    from shapely.geometry import box, mapping

    from geoseg.config import RunSettings
    from geoseg.demo import agreement
    from geoseg.pipeline.run import run
    from geoseg.training.evaluate import EvaluateSettings, evaluate

    torch.set_num_threads(1)
    packages = [
        train(
            tiny_settings(
                scenes, tmp_path / f"m{seed}.geoseg", epochs=1, steps_per_epoch=2, seed=seed
            )
        ).package
        for seed in range(n_models)
    ]
    scene = scenes[2]
    with rasterio.open(scene.image_path) as ds:
        transform, crs = ds.transform, ds.crs
    window = "rows=20:200,cols=37:251"
    left, top = transform @ (37, 20)
    right, bottom = transform @ (251, 200)
    aoi = tmp_path / "aoi.geojson"
    aoi.write_text(
        json.dumps(
            {
                "type": "FeatureCollection",
                "crs": {"type": "name", "properties": {"name": crs.to_string()}},
                "features": [
                    {
                        "type": "Feature",
                        "properties": {},
                        "geometry": mapping(box(left, bottom, right, top)),
                    }
                ],
            }
        )
    )
    report = evaluate(
        EvaluateSettings(
            model=tuple(packages), image=scene.image_path, labels=scene.labels_path,
            window=window, out=tmp_path / "eval",
        )
    )  # fmt: skip
    assert report.window.shape == (180, 214)
    result = run(
        RunSettings(aoi=aoi, scenes=[scene.image_path], models=packages, out=tmp_path / "run")
    )
    classes = Path(result.scenes[0].outputs["classes"])
    expected = agreement(classes, scene.labels_path, [c.id for c in SYNTHETIC_CLASSES])
    assert report.matrix.tolist() == expected.tolist()
    recorded = json.loads((tmp_path / "eval" / "report.json").read_text())["ensemble"]
    assert [Path(m["path"]) for m in recorded] == packages
    if n_models > 1:  # the average is not the first model alone
        single = evaluate(
            EvaluateSettings(
                model=packages[0], image=scene.image_path, labels=scene.labels_path, window=window
            )
        )
        assert single.matrix.tolist() != report.matrix.tolist()


def test_evaluate_draws_prediction_next_to_labels(
    scene_256, demo_model: Path, tmp_path: Path
) -> None:
    """side_by_side.png: where both panels are scored, they agree exactly as often as the
    report's overall accuracy says, and the right panel is the label raster."""
    from geoseg.errors import ConfigError
    from geoseg.render.figures import side_by_side_panels
    from geoseg.render.preview import NODATA_RGB, colorize
    from geoseg.training.evaluate import EvaluateSettings, evaluate

    torch.set_num_threads(1)
    with pytest.raises(ConfigError, match="--preview-window"):
        evaluate(
            EvaluateSettings(
                model=demo_model, image=scene_256.image_path, labels=scene_256.labels_path,
                window="rows=0:100", preview_window="rows=50:150", out=tmp_path / "no",
            )
        )  # fmt: skip
    assert not (tmp_path / "no").exists()  # refused before anything was written
    window = "rows=20:220,cols=10:250"
    report = evaluate(
        EvaluateSettings(
            model=demo_model, image=scene_256.image_path, labels=scene_256.labels_path,
            window=window, out=tmp_path / "eval", device="cpu",
        )
    )  # fmt: skip
    png = report.files["compare"]
    assert png == tmp_path / "eval" / "side_by_side.png"
    (lx, top), (rx, _), step = side_by_side_panels((200, 240))
    assert step == 1
    with Image.open(png) as im:
        assert im.format == "PNG"
        pixels = np.asarray(im.convert("RGB"))
    left = pixels[top : top + 200, lx : lx + 240]
    right = pixels[top : top + 200, rx : rx + 240]
    with rasterio.open(scene_256.labels_path) as ds:
        labels = ds.read(1, window=((20, 220), (10, 250)))
    np.testing.assert_array_equal(right, colorize(labels, SYNTHETIC_CLASSES))
    grey = np.array(NODATA_RGB, dtype=np.uint8)
    scored = ~np.all(left == grey, axis=-1) & ~np.all(right == grey, axis=-1)
    agree = np.all(left == right, axis=-1) & scored
    assert scored.sum() == report.scored_px
    assert agree.sum() / scored.sum() == pytest.approx(report.scores.overall_accuracy)
    saved = json.loads(report.files["report"].read_text())
    assert [o["class"] for o in saved["objects"]] == [o.name for o in report.objects]
    biggest = int(np.argmax(report.matrix.sum(axis=1)))
    names = {c.name for c in SYNTHETIC_CLASSES} - {SYNTHETIC_CLASSES[biggest].name}
    assert {o.name for o in report.objects} == names  # all but the most frequent class
    for o in report.objects:
        assert 0 <= o.matched <= min(o.predicted, o.reference)


def test_evaluate_min_area_scores_the_sieved_prediction(
    scene_256, demo_model: Path, tmp_path: Path
) -> None:
    """``min_area``: the scores are those of the run's class raster after GDAL's sieve with
    that many m² (what `geoseg run --min-area` polygonizes), not of the raw prediction;
    report.json records the area; a negative area is refused."""
    import rasterio.features
    from shapely.geometry import box

    from geoseg.classes import CLASS_NODATA
    from geoseg.config import RunSettings
    from geoseg.demo import agreement
    from geoseg.errors import ConfigError
    from geoseg.pipeline.run import run
    from geoseg.training.evaluate import EvaluateSettings, evaluate
    from tests.support.cli import write_geojson

    torch.set_num_threads(1)
    with pytest.raises(ConfigError, match="--min-area"):
        EvaluateSettings(
            model=demo_model, image=scene_256.image_path, labels=scene_256.labels_path,
            min_area=-1.0,
        )  # fmt: skip
    with rasterio.open(scene_256.image_path) as ds:
        bounds, crs, pixel_m2 = ds.bounds, ds.crs, abs(ds.transform.a * ds.transform.e)
    aoi = write_geojson(tmp_path / "aoi.geojson", [box(*bounds).__geo_interface__], crs.to_string())
    result = run(
        RunSettings(aoi=aoi, scenes=[scene_256.image_path], models=[demo_model], out=tmp_path / "r")
    )
    raw_path = Path(result.scenes[0].outputs["classes"])
    with rasterio.open(raw_path) as ds:
        raw, profile = ds.read(1), ds.profile
    threshold_px = 40
    sieved = rasterio.features.sieve(raw, threshold_px, mask=raw != CLASS_NODATA, connectivity=4)
    assert (sieved != raw).sum() > 0  # the sieve has something to do on this scene
    sieved_path = tmp_path / "sieved.tif"
    with rasterio.open(sieved_path, "w", **profile) as ds:
        ds.write(sieved, 1)
    ids = [c.id for c in SYNTHETIC_CLASSES]

    def scored(min_area: float):
        return evaluate(
            EvaluateSettings(
                model=demo_model, image=scene_256.image_path, labels=scene_256.labels_path,
                min_area=min_area, out=tmp_path / f"eval{min_area:g}", device="cpu",
            )
        )  # fmt: skip

    plain = scored(0.0)
    assert plain.matrix.tolist() == agreement(raw_path, scene_256.labels_path, ids).tolist()
    # the area just under 40 px needs 40 px to survive (ceil), as `geoseg run` rounds it
    report = scored((threshold_px - 0.5) * pixel_m2)
    assert report.matrix.tolist() == agreement(sieved_path, scene_256.labels_path, ids).tolist()
    assert sum(o.predicted for o in report.objects) < sum(o.predicted for o in plain.objects)
    saved = json.loads(report.files["report"].read_text())
    assert saved["min_area_m2"] == (threshold_px - 0.5) * pixel_m2
