"""The test servers are real: nginx serves byte ranges and real errors, GDAL reads COGs from
nginx (/vsicurl/) and moto (/vsis3/) partially, rustac answers STAC searches."""

from __future__ import annotations

import os
import sys
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pystac_client
import pytest
import rasterio
from rasterio.windows import Window

from tests.support.servers import HttpServer, S3Server, environ, running
from tests.support.stac_items import earth_search_item, write_band_cogs, write_ndjson

WINDOW = Window(300, 200, 64, 64)


def fetch(url: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    """GET ``url``: status, headers and body (error statuses too)."""
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers or {})) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def test_nginx_answers_a_range_request_with_206_and_exactly_those_bytes(
    http_server: HttpServer, http_root: Path
) -> None:
    data = np.random.default_rng(0).bytes(100_000)
    (http_root / "ranges").mkdir()
    (http_root / "ranges" / "blob.bin").write_bytes(data)

    status, headers, body = fetch(
        f"{http_server.url}/ranges/blob.bin", {"Range": "bytes=1000-1999"}
    )

    assert (status, body) == (206, data[1000:2000])
    assert headers["Content-Range"] == "bytes 1000-1999/100000"
    logged = [r for r in http_server.requests() if r.uri == "/ranges/blob.bin"]
    assert [(r.method, r.status, r.body_bytes, r.range) for r in logged] == [
        ("GET", 206, 1000, "bytes=1000-1999")
    ]
    assert http_server.bytes_sent("/ranges/") == 1000


def test_nginx_answers_404_for_a_missing_file_and_403_under_forbidden(
    http_server: HttpServer, http_root: Path
) -> None:
    (http_root / "forbidden").mkdir()
    (http_root / "forbidden" / "x").write_text("present, but forbidden")

    assert fetch(f"{http_server.url}/missing/B02.tif")[0] == 404
    assert fetch(f"{http_server.url}/forbidden/x")[0] == 403
    statuses = {r.uri: r.status for r in http_server.requests()}
    assert statuses["/missing/B02.tif"] == 404
    assert statuses["/forbidden/x"] == 403


def test_nginx_log_can_be_cleared_while_it_serves(http_server: HttpServer, http_root: Path) -> None:
    (http_root / "clear.txt").write_text("x")
    fetch(f"{http_server.url}/clear.txt")
    http_server.clear_log()
    assert http_server.requests() == []
    fetch(f"{http_server.url}/clear.txt")
    assert [r.uri for r in http_server.requests()] == ["/clear.txt"]


def test_gdal_reads_a_cog_window_from_nginx_with_range_requests_only(
    http_server: HttpServer, http_root: Path, scene_512
) -> None:
    cog = write_band_cogs(
        scene_512.image_path, http_root / "vsicurl", ["B02", "B03", "B04", "B08"]
    )["B04"]
    with rasterio.open(cog) as src:
        expected = src.read(1, window=WINDOW)
    http_server.clear_log()

    with (
        environ(GDAL_DISABLE_READDIR_ON_OPEN="EMPTY_DIR"),
        rasterio.open(f"/vsicurl/{http_server.url}/vsicurl/B04.tif") as src,
    ):
        got = src.read(1, window=WINDOW)

    np.testing.assert_array_equal(got, expected)
    gets = [r for r in http_server.requests() if r.method == "GET"]
    assert gets, "GDAL made no GET request"
    assert {r.uri for r in http_server.requests()} == {"/vsicurl/B04.tif"}  # no directory listing
    assert all(r.status == 206 and r.range.startswith("bytes=") for r in gets), gets
    assert http_server.bytes_sent("/vsicurl/") < cog.stat().st_size / 2


def test_gdal_reads_a_cog_uploaded_to_moto_through_vsis3(
    s3_server: S3Server, tmp_path: Path, scene_512
) -> None:
    cog = write_band_cogs(scene_512.image_path, tmp_path, ["B02", "B03", "B04", "B08"])["B08"]
    uri = s3_server.upload("geoseg-test", "vsis3/B08.tif", cog)
    with rasterio.open(cog) as src:
        expected = src.read(1)

    with (
        environ(**s3_server.gdal_env(), GDAL_DISABLE_READDIR_ON_OPEN="EMPTY_DIR"),
        rasterio.open("/vsis3/geoseg-test/vsis3/B08.tif") as src,
    ):
        via_environ = src.read(1)
    with s3_server.rasterio_env(), rasterio.open(uri) as src:
        via_session = src.read(1, window=WINDOW)

    assert uri == "s3://geoseg-test/vsis3/B08.tif"
    np.testing.assert_array_equal(via_environ, expected)
    np.testing.assert_array_equal(via_session, expected[WINDOW.toslices()])


def test_gdal_names_a_missing_s3_key(s3_server: S3Server, tmp_path: Path) -> None:
    (tmp_path / "f.txt").write_text("x")
    s3_server.upload("geoseg-test-missing", "f.txt", tmp_path / "f.txt")
    with environ(**s3_server.gdal_env()), pytest.raises(rasterio.errors.RasterioIOError) as exc:
        rasterio.open("/vsis3/geoseg-test-missing/nothing.tif")
    assert "does not exist" in str(exc.value)


def test_rustac_searches_by_collection_bbox_and_datetime(
    stac_api: Callable[[Path], str], tmp_path: Path, scene_512
) -> None:
    june, july = (
        earth_search_item(scene_512.image_path, tmp_path / name, item_id=name, datetime=when)
        for name, when in (("june", "2024-06-15T10:20:31Z"), ("july", "2024-07-15T10:20:31Z"))
    )
    client = pystac_client.Client.open(stac_api(write_ndjson([june, july], tmp_path / "i.ndjson")))

    def ids(**search: object) -> list[str]:
        return sorted(item.id for item in client.search(**search).items())

    assert ids(collections=["sentinel-2-l2a"], bbox=june["bbox"]) == ["july", "june"]
    assert ids(
        collections=["sentinel-2-l2a"], bbox=june["bbox"], datetime="2024-06-01/2024-06-30"
    ) == ["june"]
    assert ids(collections=["landsat-c2-l2"]) == []
    assert ids(collections=["sentinel-2-l2a"], bbox=[-60.0, -10.0, -59.0, -9.0]) == []
    found = next(client.search(ids=["june"]).items())
    assert found.assets["blue"].href == june["assets"]["blue"]["href"]


def test_a_server_that_exits_at_start_is_reported_with_its_output(tmp_path: Path) -> None:
    argv = [sys.executable, "-c", "import sys; sys.stderr.write('no such config'); sys.exit(3)"]
    with (
        pytest.raises(RuntimeError, match=r"(?s)fake exited with 3.*no such config"),
        running("fake", argv, "http://127.0.0.1:9/", tmp_path),
    ):
        pass


def test_environ_sets_unsets_and_restores() -> None:
    os.environ["GEOSEG_TEST_KEEP"] = "before"
    os.environ.pop("GEOSEG_TEST_NEW", None)
    with environ(GEOSEG_TEST_KEEP=None, GEOSEG_TEST_NEW="set"):
        assert "GEOSEG_TEST_KEEP" not in os.environ
        assert os.environ["GEOSEG_TEST_NEW"] == "set"
    assert os.environ["GEOSEG_TEST_KEEP"] == "before"
    assert "GEOSEG_TEST_NEW" not in os.environ
    del os.environ["GEOSEG_TEST_KEEP"]
