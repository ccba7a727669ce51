"""Issue 14 acceptance: STAC items of per-band COGs over real HTTP, S3 and a STAC API.

The same synthetic landscape is mapped as a stacked local GeoTIFF and as items modelled on
Earth Search, Planetary Computer and Landsat Collection 2, served by nginx (byte ranges),
moto's S3 server and `rustac serve`; the class rasters are compared pixel by pixel.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pyogrio
import pytest
import rasterio
import shapely

from geoseg.config import RunSettings, StacQuery
from geoseg.io.outputs import CLASSES_NAME, POLYGONS_NAME, RUN_JSON
from geoseg.models import DEMO_MODEL
from geoseg.pipeline.run import run
from geoseg.training.metrics import confusion_matrix, scores
from tests.support.servers import HttpServer, S3Server, environ
from tests.support.stac_items import (
    earth_search_item,
    landsat_item,
    planetary_item,
    write_item,
    write_ndjson,
)

CLOUD_BOX = (180, 260, 200, 300)  # rows, cols in 10 m pixels, inside the valid area


def map_scenes(out: Path, aoi: Path, *scenes: str, **options: Any) -> Path:
    """Run the pipeline in-process (no Dask) and return the output folder."""
    settings = RunSettings(
        aoi=aoi, scenes=list(scenes), models=[DEMO_MODEL], out=out, workers=0, **options
    )
    run(settings)
    return out


def classes_of(out: Path, name: str) -> tuple[np.ndarray, rasterio.Affine, str]:
    with rasterio.open(out / name / CLASSES_NAME) as ds:
        return ds.read(1), ds.transform, ds.crs.to_string()


def box_in_output(scene: Path, transform: rasterio.Affine, shape: tuple[int, int]) -> np.ndarray:
    """`CLOUD_BOX` (scene pixels) as a mask over an output window placed by ``transform``."""
    with rasterio.open(scene) as ds:
        col, row = ~ds.transform @ (transform.c, transform.f)
    r0, r1, c0, c1 = CLOUD_BOX
    box = np.zeros(shape, dtype=bool)
    box[r0 - round(row) : r1 - round(row), c0 - round(col) : c1 - round(col)] = True
    return box


def scene_record(out: Path, index: int = 0) -> dict[str, Any]:
    return json.loads((out / RUN_JSON).read_text())["scenes"][index]


@pytest.fixture(scope="module")
def local_run(scene_512, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The stacked local GeoTIFF mapped as before: the reference for every item run."""
    out = tmp_path_factory.mktemp("local") / "out"
    return map_scenes(out, scene_512.aoi_path, str(scene_512.image_path))


@pytest.fixture(scope="module")
def served(scene_512, http_server: HttpServer, http_root: Path) -> Callable[..., str]:
    """Build an item with ``builder`` into the nginx root; return its item JSON URL."""

    def make(builder: Callable[..., dict[str, Any]], folder: str, **kwargs: Any) -> str:
        item = builder(
            scene_512.image_path,
            http_root / folder,
            href_base=f"{http_server.url}/{folder}",
            **kwargs,
        )
        write_item(item, http_root / folder / "item.json")
        return f"{http_server.url}/{folder}/item.json"

    return make


def test_item_from_stac_api_over_http_equals_the_stacked_scene(
    *, scene_512, local_run: Path, served, http_root: Path, stac_api, tmp_path: Path
) -> None:
    served(earth_search_item, "es-api", item_id="S2A_T1_20240615", cloud_box=None)
    other = served(
        earth_search_item, "es-old", item_id="S2A_T1_20230615", datetime="2023-06-15T10:20:31Z"
    )
    assert other
    items = [json.loads((http_root / f / "item.json").read_text()) for f in ("es-api", "es-old")]
    api = stac_api(write_ndjson(items, tmp_path / "items.ndjson"))
    query = StacQuery(api=api, collections=["sentinel-2-l2a"], datetime="2024-06-01/2024-06-30")
    out = map_scenes(tmp_path / "out", scene_512.aoi_path, stac=query, cloud_mask="none")

    expected, transform, crs = classes_of(local_run, "scene")
    got, got_transform, got_crs = classes_of(out, "S2A_T1_20240615")
    assert (got_transform, got_crs) == (transform, crs)
    assert np.array_equal(got, expected)  # offset +1000 declared in raster:bands: converted
    record = scene_record(out)
    assert record["input"]["kind"] == "stac-item"
    assert record["input"]["radiometry"][0]["bias"] == -1000.0
    assert not (out / "S2A_T1_20230615").exists()  # outside the datetime window


def test_planetary_item_offset_implied_by_the_baseline_is_applied(
    scene_512, local_run: Path, served, tmp_path: Path
) -> None:
    url = served(planetary_item, "pc", item_id="S2B_PC_1", processing_baseline="04.00")
    out = map_scenes(tmp_path / "out", scene_512.aoi_path, url, cloud_mask="none")
    expected, _, _ = classes_of(local_run, "scene")
    got, _, _ = classes_of(out, "S2B_PC_1")
    assert np.array_equal(got, expected)
    declared = scene_record(out)["input"]["radiometry"][0]["declared"]
    assert declared["source"] == "s2:processing_baseline 04.00"


def test_offset_stored_but_not_declared_warns_and_changes_the_classes(
    scene_512, local_run: Path, served, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    url = served(earth_search_item, "es-undeclared", item_id="S2A_NODECL", declare_offset=False)
    with caplog.at_level(logging.WARNING, logger="geoseg"):
        out = map_scenes(tmp_path / "out", scene_512.aoi_path, url, cloud_mask="none")
    # raster:bands still declares scale 1e-4 without offset, and the baseline 05.00 says the
    # +1000 is there: the baseline rule supplies the offset, so nothing is lost silently
    expected, _, _ = classes_of(local_run, "scene")
    got, _, _ = classes_of(out, "S2A_NODECL")
    assert np.array_equal(got, expected)
    assert (
        "s2:processing_baseline"
        in scene_record(out)["input"]["radiometry"][0]["declared"]["source"]
    )


def test_stored_offset_declared_nowhere_warns(
    *,
    scene_512,
    local_run: Path,
    served,
    http_root: Path,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    url = served(earth_search_item, "es-bare", item_id="S2A_BARE")
    item_path = http_root / "es-bare" / "item.json"
    item = json.loads(item_path.read_text())
    item["properties"].pop("s2:processing_baseline")
    for asset in item["assets"].values():
        asset.pop("raster:bands", None)
    write_item(item, item_path)
    with caplog.at_level(logging.WARNING, logger="geoseg"):
        out = map_scenes(tmp_path / "out", scene_512.aoi_path, url, cloud_mask="none")
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("item S2A_BARE" in w and "declares no scale/offset" in w for w in warnings)
    expected, _, _ = classes_of(local_run, "scene")
    got, _, _ = classes_of(out, "S2A_BARE")
    assert not np.array_equal(got, expected)  # +1000 unconverted: the model sees other values


def test_20m_item_is_resampled_to_the_10m_model(
    scene_512, served, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = served(earth_search_item, "es20", item_id="S2A_20M", factor=2)
    out = map_scenes(tmp_path / "out", scene_512.aoi_path, url, cloud_mask="none")
    got, transform, _ = classes_of(out, "S2A_20M")
    with rasterio.open(scene_512.labels_path) as ds:
        col, row = ~ds.transform @ (transform.c, transform.f)
        assert transform.a == 10.0 and (col, row) == (round(col), round(row))  # same 10 m grid
        window = rasterio.windows.Window(round(col), round(row), got.shape[1], got.shape[0])
        labels = ds.read(1, window=window)
    n = 5
    miou = float(np.nanmean(scores(confusion_matrix(labels, got, n)).iou))
    record = scene_record(out)["input"]["grid"]
    assert record["native_gsd_m"] == 20.0 and record["gsd_m"] == 10.0
    assert "bilinear" in record["resampling"]
    with capsys.disabled():
        print(f"\n20 m item with the 10 m demo model: mIoU {miou:.3f} against the labels")
    assert miou > 0.5


def test_no_resample_refuses_the_20m_item(scene_512, served, tmp_path: Path) -> None:
    from geoseg.errors import IncompatibleSceneError

    url = served(earth_search_item, "es20b", item_id="S2A_20M_B", factor=2)
    with pytest.raises(IncompatibleSceneError, match=r"--no-resample"):
        map_scenes(tmp_path / "out", scene_512.aoi_path, url, resample=False)
    assert not (tmp_path / "out").exists()


def test_scl_cloud_is_nodata_and_not_vectorized_rest_unchanged(
    scene_512, served, tmp_path: Path
) -> None:
    url = served(earth_search_item, "es-cloud", item_id="S2A_CLOUD", cloud_box=CLOUD_BOX)
    clear = map_scenes(tmp_path / "clear", scene_512.aoi_path, url, cloud_mask="none")
    masked = map_scenes(tmp_path / "masked", scene_512.aoi_path, url)
    a, transform, _ = classes_of(clear, "S2A_CLOUD")
    b, _, _ = classes_of(masked, "S2A_CLOUD")
    box = box_in_output(scene_512.image_path, transform, a.shape)
    assert box.sum() == 8000  # wholly inside the AOI window
    assert (b[box] == 255).all()
    assert np.array_equal(a[~box], b[~box])  # the model saw the cloud pixels as context
    record = scene_record(masked)
    assert record["masked_px"] == box.sum()
    assert record["input"]["cloud_mask"]["asset"] == "scl"
    polygons = pyogrio.read_dataframe(masked / "S2A_CLOUD" / POLYGONS_NAME, layer="landcover")
    rows, cols = np.nonzero(box)
    x0, y0 = transform @ (cols.min() + 1, rows.min() + 1)
    x1, y1 = transform @ (cols.max(), rows.max())
    inner = shapely.box(min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1))
    assert polygons.geometry.intersection(inner).area.sum() == 0


def test_landsat_item_with_qa_pixel(scene_512, local_run: Path, served, tmp_path: Path) -> None:
    url = served(landsat_item, "lc", item_id="LC08_T1", cloud_box=CLOUD_BOX)
    out = map_scenes(tmp_path / "out", scene_512.aoi_path, url)
    expected, _, _ = classes_of(local_run, "scene")
    got, transform, _ = classes_of(out, "LC08_T1")
    box = box_in_output(scene_512.image_path, transform, got.shape)
    assert (got[box] == 255).all()
    near = np.argwhere(box)
    (top, left), (bottom, right) = near.min(axis=0), near.max(axis=0)
    outside = np.ones(got.shape, dtype=bool)
    outside[max(top - 40, 0) : bottom + 40, max(left - 40, 0) : right + 40] = False
    # DN = round((reflectance + 0.2) / 2.75e-05) loses < 1.4e-5 reflectance: few pixels move
    agree = float((got[outside] == expected[outside]).mean())
    assert agree > 0.995
    assert scene_record(out)["input"]["cloud_mask"]["bits"] == [0, 1, 2, 3, 4]


def test_item_on_s3_equals_the_stacked_scene(
    scene_512, local_run: Path, s3_server: S3Server, tmp_path: Path
) -> None:
    folder = tmp_path / "bucket"
    item = earth_search_item(
        scene_512.image_path, folder, item_id="S2A_S3", href_base="s3://geoseg-test/s2"
    )
    for path in folder.iterdir():
        s3_server.upload("geoseg-test", f"s2/{path.name}", path)
    item_path = write_item(item, tmp_path / "item.json")
    with environ(**s3_server.gdal_env()):
        out = map_scenes(tmp_path / "out", scene_512.aoi_path, str(item_path), cloud_mask="none")
    expected, _, _ = classes_of(local_run, "scene")
    got, _, _ = classes_of(out, "S2A_S3")
    assert np.array_equal(got, expected)
    text = (out / RUN_JSON).read_text()
    assert s3_server.gdal_env()["AWS_SECRET_ACCESS_KEY"] not in text


def test_plain_remote_raster_urls_are_read_in_place(
    scene_512, local_run: Path, http_server: HttpServer, http_root: Path, tmp_path: Path
) -> None:
    (http_root / "plain").mkdir(exist_ok=True)
    target = http_root / "plain" / "scene.tif"
    target.write_bytes(scene_512.image_path.read_bytes())
    url = f"{http_server.url}/plain/scene.tif"
    signed = f"{url}?X-Amz-Signature=secret123&X-Amz-Credential=AKIDEXAMPLE"
    expected, transform, _ = classes_of(local_run, "scene")
    for i, href in enumerate((url, f"/vsicurl/{url}", signed)):
        out = map_scenes(tmp_path / f"out{i}", scene_512.aoi_path, href)
        got, got_transform, _ = classes_of(out, "scene")
        assert got_transform == transform and np.array_equal(got, expected)
    run_json = (tmp_path / "out2" / RUN_JSON).read_text()
    assert "secret123" not in run_json and "AKIDEXAMPLE" not in run_json


def test_cli_search_prints_items_found_and_used(
    *, scene_512, served, http_root: Path, stac_api, tmp_path: Path
) -> None:
    from tests.support.cli import geoseg_cli

    served(earth_search_item, "es-cli", item_id="S2A_CLI", cloud_cover=5.0)
    served(
        earth_search_item,
        "es-cli2",
        item_id="S2A_CLI2",
        cloud_cover=70.0,
        datetime="2024-06-20T10:20:31Z",
    )
    items = [json.loads((http_root / f / "item.json").read_text()) for f in ("es-cli", "es-cli2")]
    api = stac_api(write_ndjson(items, tmp_path / "items.ndjson"))
    proc = geoseg_cli(
        "run", "--aoi", scene_512.aoi_path, "--out", tmp_path / "out", "--workers", "0",
        "--stac-api", api, "--collection", "sentinel-2-l2a", "--max-cloud", "20",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "2 item(s) of sentinel-2-l2a intersect the AOI, 1 with ≤ 20 % cloud; using 1" in (
        proc.stderr
    )
    assert (tmp_path / "out" / "S2A_CLI" / CLASSES_NAME).is_file()
    assert not (tmp_path / "out" / "S2A_CLI2").exists()
