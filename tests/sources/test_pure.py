"""Pure parts of geoseg.sources: hrefs, band names, radiometry, masks, VRT geometry, plans."""

from __future__ import annotations

import numpy as np
import pytest
from affine import Affine
from hypothesis import given
from hypothesis import strategies as st
from rasterio.crs import CRS

from geoseg.errors import ConfigError, StacError
from geoseg.geo.scene import SceneGrid
from geoseg.io.pixels import BandConversion, MaskRule, ReadPlan
from geoseg.sources.bands import find_asset, match_bands
from geoseg.sources.gdal_env import gdal_remote_env, remote_defaults
from geoseg.sources.hrefs import gdal_path, href_stem, href_suffix, redact, resolve_href
from geoseg.sources.masks import QA_PIXEL_BITS, SCL_MASKED, choose_mask, parse_cloud_mask
from geoseg.sources.radiometry import (
    Radiometry,
    conversion,
    item_radiometry,
    unknown_units_warning,
)
from geoseg.sources.resolve import resampling_for
from geoseg.sources.search import keep_items
from geoseg.sources.vrt import dst_rect

UTM = CRS.from_epsg(32633)


def test_gdal_paths_and_suffixes() -> None:
    assert gdal_path("https://h/a/b.tif") == "/vsicurl/https://h/a/b.tif"
    assert gdal_path("s3://bucket/k/b.tif") == "/vsis3/bucket/k/b.tif"
    assert gdal_path("/data/b.tif") == "/data/b.tif"
    assert href_suffix("https://h/a/B04.TIF?sig=1") == ".tif"
    assert href_stem("/vsicurl/https://h/a/scene.tif") == "scene"
    assert href_suffix("https://h/collections/x/items/S2A_1") == ""


def test_redact_drops_credentials_and_signatures() -> None:
    assert redact("https://user:pw@h:8080/a.tif?X-Amz-Signature=abc") == (
        "https://h:8080/a.tif?<redacted>"
    )
    assert redact("/vsicurl/https://h/a.tif?sig=1") == "/vsicurl/https://h/a.tif?<redacted>"
    assert redact("/local/a.tif") == "/local/a.tif"


def test_relative_hrefs_resolve_against_their_document(tmp_path) -> None:
    assert resolve_href("./B02.tif", "https://h/items/x.json") == "https://h/items/B02.tif"
    assert resolve_href("B02.tif", str(tmp_path / "item.json")) == str(tmp_path / "B02.tif")
    assert resolve_href("s3://b/k.tif", "https://h/x.json") == "s3://b/k.tif"


EARTH_SEARCH = {
    "blue": {"type": "image/tiff; application=geotiff", "roles": ["data"]},
    "nir": {"type": "image/tiff; application=geotiff", "roles": ["data"]},
    "nir08": {"type": "image/tiff; application=geotiff", "roles": ["data"]},
    "blue-jp2": {"type": "image/jp2", "roles": ["data"]},
    "thumbnail": {"type": "image/jpeg", "roles": ["thumbnail"]},
}
PLANETARY = {
    "B02": {"type": "image/tiff", "eo:bands": [{"name": "B02", "common_name": "blue"}]},
    "B08": {"type": "image/tiff", "eo:bands": [{"name": "B08", "common_name": "nir"}]},
    "B8A": {"type": "image/tiff", "eo:bands": [{"name": "B8A", "common_name": "nir08"}]},
}
LANDSAT = {
    "SR_B2": {"type": "image/tiff", "eo:bands": [{"name": "SR_B2", "common_name": "blue"}]},
    "nir08": {"type": "image/tiff", "eo:bands": [{"name": "SR_B5", "common_name": "nir08"}]},
}


@pytest.mark.parametrize(
    ("assets", "band", "key"),
    [
        (EARTH_SEARCH, "blue", "blue"),
        (EARTH_SEARCH, "nir", "nir"),  # the 10 m B08, not nir08 (B8A)
        (PLANETARY, "blue", "B02"),
        (PLANETARY, "nir", "B08"),
        (PLANETARY, "NIR", "B08"),
        (LANDSAT, "blue", "SR_B2"),
        (LANDSAT, "nir", "nir08"),  # Landsat's NIR is nir08 (SR_B5)
        (EARTH_SEARCH, "red", None),
    ],
)
def test_bands_are_found_by_key_name_common_name_and_alias(assets, band, key) -> None:
    assert find_asset(assets, band) == key


def test_missing_band_lists_the_item_assets() -> None:
    with pytest.raises(StacError, match=r"item X: no asset holds the model band\(s\) red"):
        match_bands("X", PLANETARY, ["blue", "red"])


def test_item_radiometry_rules() -> None:
    s2 = {"s2:processing_baseline": "05.00"}
    declared = {"raster:bands": [{"scale": 0.0001, "offset": -0.1}]}
    assert item_radiometry(s2, "blue", declared) == Radiometry(1e-4, -0.1, "raster:bands")
    scale_only = {"raster:bands": [{"scale": 0.0001}]}
    assert item_radiometry(s2, "blue", scale_only).offset == -0.1  # baseline fills the gap
    assert item_radiometry({"s2:processing_baseline": "03.01"}, "B02", {}).offset == 0.0
    assert item_radiometry({"s2:processing_baseline": "04.00"}, "B02", {}).offset == -0.1
    landsat = item_radiometry({"platform": "landsat-8"}, "SR_B2", {})
    assert (landsat.scale, landsat.offset) == (2.75e-05, -0.2)
    assert item_radiometry({"platform": "landsat-8"}, "ST_B10", {}) is None
    assert item_radiometry({}, "blue", {}) is None


def test_conversion_into_model_units() -> None:
    model = Radiometry(1e-4, 0.0, "model package")
    assert conversion(Radiometry(1e-4, -0.1, "x"), model) == BandConversion(1.0, -1000.0)
    landsat = conversion(Radiometry(2.75e-05, -0.2, "x"), model)
    assert landsat == BandConversion(0.275, -2000.0)
    assert conversion(None, model).identity and conversion(Radiometry(2, 0, "x"), None).identity


def test_unknown_units_warn_once() -> None:
    model = Radiometry(1e-4, 0.0, "model package")
    assert "declares no scale/offset" in unknown_units_warning("s", [None, None], model)
    assert "does not record" in unknown_units_warning("s", [Radiometry(1e-4, -0.1, "x")], None)
    assert unknown_units_warning("s", [Radiometry(1e-4, 0, "x")], model) is None
    assert unknown_units_warning("s", [None], None) is None


def test_cloud_mask_specs() -> None:
    assert parse_cloud_mask("AUTO").mode == "auto"
    spec = parse_cloud_mask("scl:3,8,9")
    assert (spec.asset, spec.values) == ("scl", (3, 8, 9))
    for bad in ("scl", "scl:", "scl:a,b", ":3"):
        with pytest.raises(ConfigError, match="--cloud-mask"):
            parse_cloud_mask(bad)
    assert choose_mask(parse_cloud_mask("auto"), "i", {"SCL": {}}).values == SCL_MASKED
    assert choose_mask(parse_cloud_mask("auto"), "i", {"qa_pixel": {}}).bits == QA_PIXEL_BITS
    assert choose_mask(parse_cloud_mask("auto"), "i", {"blue": {}}) is None
    assert choose_mask(parse_cloud_mask("none"), "i", {"scl": {}}) is None


def test_mask_rules_values_and_bits() -> None:
    scl = np.array([[0, 4, 9], [3, 5, 10]], dtype=np.uint8)
    assert MaskRule(5, values=SCL_MASKED).masked(scl).tolist() == [
        [True, False, True],
        [True, False, True],
    ]
    qa = np.array([21824, 22280, 1, 21824 | (1 << 4)], dtype=np.uint16)
    assert MaskRule(5, bits=QA_PIXEL_BITS).masked(qa).tolist() == [False, True, True, True]


def test_read_plan_conversion_is_exact_and_fills_nodata() -> None:
    data = np.array([[[1000, 1500, 0]]], dtype=np.uint16)
    valid = np.array([[True, True, False]])
    plan = ReadPlan((1,), (BandConversion(1.0, -1000.0),))
    assert plan.convert(data, valid).tolist() == [[[0.0, 500.0, 0.0]]]
    assert ReadPlan.stored([1]).convert(data, valid).tolist() == [[[1000.0, 1500.0, 0.0]]]


def grid(res: float, x0: float = 500_000.0, y0: float = 4_000_000.0, n: int = 100) -> SceneGrid:
    return SceneGrid(UTM, Affine(res, 0, x0, 0, -res, y0), n, n)


def test_dst_rect_and_resampling_choice() -> None:
    target = grid(10)
    assert dst_rect(grid(20, n=50), target) == (0.0, 0.0, 100.0, 100.0)
    assert dst_rect(grid(10, x0=500_100.0), target)[0] == 10.0
    assert resampling_for(grid(10), target) == "nearest"
    assert resampling_for(grid(20), target) == "bilinear"
    assert resampling_for(grid(5), target) == "average"
    assert resampling_for(grid(10, x0=500_005.0), target) == "bilinear"


@given(
    st.integers(1, 5000), st.sampled_from([10.0, 20.0, 30.0, 60.0]), st.sampled_from([10.0, 30.0])
)
def test_resampled_grid_covers_the_scene_from_its_origin(n: int, res: float, gsd: float) -> None:
    native = SceneGrid(UTM, Affine(res, 0, 300_000, 0, -res, 5_000_000), n, n + 3)
    out = native.resampled(gsd / res)
    assert out.transform.a == gsd and (out.transform.c, out.transform.f) == (300_000, 5_000_000)
    assert out.width * gsd >= native.width * res > (out.width - 1) * gsd - 1e-6
    assert out.height * gsd >= native.height * res > (out.height - 1) * gsd - 1e-6


def test_keep_items_filters_cloud_and_keeps_the_newest() -> None:
    items = [
        {"id": "a", "properties": {"datetime": "2024-06-03", "eo:cloud_cover": 10}},
        {"id": "b", "properties": {"datetime": "2024-06-01", "eo:cloud_cover": 90}},
        {"id": "c", "properties": {"datetime": "2024-06-02"}},
        {"id": "d", "properties": {"datetime": "2024-06-04", "eo:cloud_cover": 5}},
    ]
    kept, within = keep_items(items, 20, 2)
    assert [i["id"] for i in kept] == ["a", "d"] and within == 3
    assert [i["id"] for i in keep_items(items, None, None)[0]] == ["b", "c", "a", "d"]


def test_remote_gdal_settings_never_override_the_user(monkeypatch: pytest.MonkeyPatch) -> None:
    assert remote_defaults(["/data/a.tif"]) == {}
    settings = remote_defaults(["https://h/a.tif", "s3://b/c.TIF"])
    assert settings["GDAL_DISABLE_READDIR_ON_OPEN"] == "EMPTY_DIR"
    assert settings["CPL_VSIL_CURL_ALLOWED_EXTENSIONS"] == ".tif"
    assert "CPL_VSIL_CURL_ALLOWED_EXTENSIONS" not in remote_defaults(["https://h/items/x"])
    monkeypatch.setenv("GDAL_HTTP_MAX_RETRY", "9")
    monkeypatch.delenv("GDAL_HTTP_TIMEOUT", raising=False)
    import os

    with gdal_remote_env(["https://h/a.tif"]) as applied:
        assert os.environ["GDAL_HTTP_MAX_RETRY"] == "9" and "GDAL_HTTP_MAX_RETRY" not in applied
        assert os.environ["GDAL_HTTP_TIMEOUT"] == "60"
    assert "GDAL_HTTP_TIMEOUT" not in os.environ
