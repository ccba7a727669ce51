"""Every bad remote or STAC input fails before any output, with one line naming what and why.

The servers are real (nginx, moto's S3, rustac serve); the failures are real responses: 404,
403, a closed port, an empty search.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyogrio
import pytest
import rasterio
import shapely
from shapely.geometry import mapping

from geoseg.config import RunSettings, StacQuery
from geoseg.errors import AoiError, GeosegError, RemoteSourceError, StacError
from geoseg.models import DEMO_MODEL
from geoseg.pipeline.run import run
from tests.support.cli import geoseg_cli
from tests.support.servers import HttpServer, S3Server, environ
from tests.support.stac_items import earth_search_item, write_item, write_ndjson


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def fails(tmp_path: Path, aoi: Path, error: type[GeosegError], *scenes: str, **options: Any) -> str:
    """Run and return the one-line message of the expected error; nothing may be written."""
    out = tmp_path / "out"
    settings = RunSettings(
        aoi=aoi, scenes=list(scenes), models=[DEMO_MODEL], out=out, workers=0, **options
    )
    with pytest.raises(error) as info:
        run(settings)
    message = str(info.value)
    assert "\n" not in message
    assert not out.exists(), "outputs were written before the inputs were checked"
    return message


@pytest.fixture(scope="module")
def item_folder(scene_512, http_server: HttpServer, http_root: Path) -> tuple[str, dict[str, Any]]:
    """One Earth Search-style item's COGs on nginx: (base URL, item dict)."""
    item = earth_search_item(
        scene_512.image_path,
        http_root / "bad",
        item_id="S2_BAD",
        href_base=f"{http_server.url}/bad",
    )
    return f"{http_server.url}/bad", item


def edited(item: dict[str, Any], path: Path, edit: Callable[[dict[str, Any]], None]) -> str:
    doc = json.loads(json.dumps(item))
    edit(doc)
    return str(write_item(doc, path))


def test_asset_404(scene_512, item_folder, tmp_path: Path) -> None:
    base, item = item_folder

    def missing(doc: dict[str, Any]) -> None:
        doc["assets"]["blue"]["href"] = f"{base}/gone.tif?X-Amz-Signature=s3cr3t"

    message = fails(
        tmp_path, scene_512.aoi_path, RemoteSourceError, edited(item, tmp_path / "i.json", missing)
    )
    assert message.startswith("item S2_BAD asset blue (")
    assert "not found (HTTP 404)" in message and "s3cr3t" not in message


def test_asset_403(scene_512, item_folder, tmp_path: Path) -> None:
    base, item = item_folder
    root = base.rsplit("/", 1)[0]

    def forbidden(doc: dict[str, Any]) -> None:
        doc["assets"]["red"]["href"] = f"{root}/forbidden/B04.tif"

    message = fails(
        tmp_path,
        scene_512.aoi_path,
        RemoteSourceError,
        edited(item, tmp_path / "i.json", forbidden),
    )
    assert "item S2_BAD asset red" in message and "access denied (HTTP 403)" in message


def test_server_unreachable(scene_512, item_folder, tmp_path: Path) -> None:
    _, item = item_folder
    port = closed_port()

    def unreachable(doc: dict[str, Any]) -> None:
        doc["assets"]["green"]["href"] = f"http://127.0.0.1:{port}/B03.tif"

    with environ(GDAL_HTTP_MAX_RETRY="0"):
        message = fails(
            tmp_path,
            scene_512.aoi_path,
            RemoteSourceError,
            edited(item, tmp_path / "i.json", unreachable),
        )
    assert "item S2_BAD asset green" in message and "unreachable" in message


def test_item_url_404(scene_512, http_server: HttpServer, tmp_path: Path) -> None:
    message = fails(
        tmp_path, scene_512.aoi_path, RemoteSourceError, f"{http_server.url}/nothing/item.json"
    )
    assert "cannot be fetched (HTTP 404)" in message


def test_item_without_a_model_band(scene_512, item_folder, tmp_path: Path) -> None:
    _, item = item_folder
    message = fails(
        tmp_path,
        scene_512.aoi_path,
        StacError,
        edited(item, tmp_path / "i.json", lambda d: d["assets"].pop("nir")),
    )
    assert "item S2_BAD: no asset holds the model band(s) nir" in message
    assert "blue, green, red, nir" in message and "scl" in message  # model bands, item assets


def test_assets_in_different_crss(scene_512, item_folder, http_root: Path, tmp_path: Path) -> None:
    base, item = item_folder
    with rasterio.open(http_root / "bad" / "B08.tif") as src:
        profile = src.profile | {"crs": "EPSG:32634"}
        data = src.read()
    with rasterio.open(http_root / "bad" / "B08_other_crs.tif", "w", **profile) as dst:
        dst.write(data)

    def other_crs(doc: dict[str, Any]) -> None:
        doc["assets"]["nir"]["href"] = f"{base}/B08_other_crs.tif"

    message = fails(
        tmp_path, scene_512.aoi_path, StacError, edited(item, tmp_path / "i.json", other_crs)
    )
    assert (
        "item S2_BAD: its assets are in different CRSs" in message and "nir: EPSG:32634" in message
    )


def test_mask_asset_absent(scene_512, item_folder, tmp_path: Path) -> None:
    _, item = item_folder
    path = edited(item, tmp_path / "i.json", lambda d: None)
    message = fails(tmp_path, scene_512.aoi_path, StacError, path, cloud_mask="cloudmask:1,2")
    assert "no mask asset 'cloudmask' for --cloud-mask" in message and "scl" in message


def test_s3_key_missing(scene_512, s3_server: S3Server, tmp_path: Path) -> None:
    s3_server.upload("geoseg-bad", "x/readme.txt", Path(__file__))
    with environ(**s3_server.gdal_env()):
        message = fails(
            tmp_path, scene_512.aoi_path, RemoteSourceError, "s3://geoseg-bad/x/missing.tif"
        )
    assert message.startswith("s3://geoseg-bad/x/missing.tif") and "not found" in message


def test_stac_api_unreachable(scene_512, tmp_path: Path) -> None:
    query = StacQuery(api=f"http://127.0.0.1:{closed_port()}", collections=["sentinel-2-l2a"])
    message = fails(tmp_path, scene_512.aoi_path, RemoteSourceError, stac=query)
    assert "the STAC API is unreachable" in message and "--stac-api" in message


def test_search_without_items_suggests_widening(
    scene_512, item_folder, stac_api, tmp_path: Path
) -> None:
    _, item = item_folder
    api = stac_api(write_ndjson([item], tmp_path / "items.ndjson"))
    query = StacQuery(api=api, collections=["sentinel-2-l2a"], datetime="1990-01-01/1990-12-31")
    message = fails(tmp_path, scene_512.aoi_path, StacError, stac=query)
    assert "no items of sentinel-2-l2a intersect the AOI in 1990-01-01/1990-12-31" in message
    assert "widen --datetime or raise --max-cloud" in message


def test_cloud_filter_runs_on_the_client_when_the_server_ignores_it(
    scene_512, item_folder, stac_api, tmp_path: Path
) -> None:
    _, item = item_folder
    cloudy = json.loads(json.dumps(item)) | {"id": "S2_CLOUDY"}
    cloudy["properties"] = item["properties"] | {"eo:cloud_cover": 80.0}
    api = stac_api(write_ndjson([item, cloudy], tmp_path / "items.ndjson"))
    query = StacQuery(api=api, collections=["sentinel-2-l2a"], max_cloud=50)
    from geoseg.sources.search import search_items

    with rasterio.open(scene_512.image_path):
        pass
    aoi = shapely.from_geojson(json.dumps(item["geometry"]))
    result = search_items(query.search(), aoi)
    assert [i.id for i in result.items] == ["S2_BAD"]
    assert (result.found, result.within_cloud) == (2, 1)
    strict = StacQuery(api=api, collections=["sentinel-2-l2a"], max_cloud=1)
    message = fails(tmp_path, scene_512.aoi_path, StacError, stac=strict)
    assert "with ≤ 1 % cloud (2 without the cloud limit)" in message
    assert mapping(aoi)


def test_stac_collection_is_not_an_item(scene_512, tmp_path: Path) -> None:
    path = tmp_path / "collection.json"
    path.write_text(json.dumps({"type": "Collection", "stac_version": "1.0.0", "id": "c"}))
    message = fails(tmp_path, scene_512.aoi_path, StacError, str(path))
    assert "a STAC Collection, not items; search it with --stac-api" in message


def test_multi_layer_aoi_needs_a_layer(scene_512, tmp_path: Path) -> None:
    gpkg = tmp_path / "aois.gpkg"
    df = pyogrio.read_dataframe(scene_512.aoi_path)
    pyogrio.write_dataframe(df, gpkg, layer="north")
    pyogrio.write_dataframe(df, gpkg, layer="south", append=False)
    message = fails(tmp_path, gpkg, AoiError, str(scene_512.image_path))
    assert "has 2 layers (north, south)" in message and "--aoi-layer NAME" in message
    message = fails(tmp_path, gpkg, AoiError, str(scene_512.image_path), aoi_layer="east")
    assert "no layer 'east'" in message


def test_cli_one_line_and_exit_code(scene_512, item_folder, tmp_path: Path) -> None:
    _, item = item_folder
    path = edited(item, tmp_path / "i.json", lambda d: d["assets"].pop("red"))
    proc = geoseg_cli(
        "run", "--aoi", scene_512.aoi_path, "--scenes", path, "--out", tmp_path / "out"
    )
    assert proc.returncode == 2
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "no asset holds the model band(s) red" in lines[0]
    assert not (tmp_path / "out").exists()
    proc = geoseg_cli("run", "--aoi", scene_512.aoi_path, "--scenes", path, "--cloud-mask", "scl:x")
    assert proc.returncode == 2 and "--cloud-mask" in proc.stderr
