"""The STAC item builders: items pystac reads, hrefs as asked, DN stored as each catalogue
stores them, 20 m grids, cloud masks."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pystac
import pytest
import rasterio
from affine import Affine
from pystac.extensions.eo import EOExtension
from pystac.extensions.projection import ProjectionExtension

from tests.support.stac_items import (
    QA_CLEAR,
    QA_CLOUD,
    QA_FILL,
    SCL_CLOUD_HIGH,
    SCL_NODATA,
    SCL_VEGETATION,
    earth_search_item,
    landsat_item,
    planetary_item,
    write_item,
    write_item_collection,
    write_ndjson,
)

BUILDERS: dict[str, Callable[..., dict[str, Any]]] = {
    "earth-search": earth_search_item,
    "planetary": planetary_item,
    "landsat": landsat_item,
}
BAND_KEYS = {
    "earth-search": ["blue", "green", "red", "nir"],
    "planetary": ["B02", "B03", "B04", "B08"],
    "landsat": ["SR_B2", "SR_B3", "SR_B4", "SR_B5"],
}
MASK_KEYS = {"earth-search": "scl", "planetary": "SCL", "landsat": "QA_PIXEL"}
CLOUD_BOX = (160, 260, 180, 330)
"""Rows 160-260, cols 180-330 of the 512 px scene (10 m pixels), across valid and nodata."""


def read(path: str | Path) -> np.ndarray:
    """Band 1 of a raster."""
    with rasterio.open(path) as src:
        return src.read(1)


def scene_band(scene_512, band: int) -> np.ndarray:
    """One band (0-based) of the synthetic scene."""
    with rasterio.open(scene_512.image_path) as src:
        return src.read(band + 1)


@pytest.fixture(scope="module")
def built(scene_512, tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    """One item of each catalogue over the 512 px scene, local hrefs, a cloud box."""
    out = tmp_path_factory.mktemp("items")
    return {
        name: build(scene_512.image_path, out / name, cloud_box=CLOUD_BOX)
        for name, build in BUILDERS.items()
    }


@pytest.mark.parametrize("name", BUILDERS)
def test_pystac_reads_the_item_and_its_bands_common_names(
    built: dict[str, dict[str, Any]], name: str
) -> None:
    item = pystac.Item.from_dict(built[name])

    assert item.collection_id == {"landsat": "landsat-c2-l2"}.get(name, "sentinel-2-l2a")
    assert built[name]["properties"]["proj:epsg"] == 32633
    # pystac migrates projection v1 items: proj:epsg becomes proj:code "EPSG:32633"
    assert ProjectionExtension.ext(item).epsg == 32633
    assert item.properties["eo:cloud_cover"] == 5.0
    common = [EOExtension.ext(item.assets[k]).bands[0].common_name for k in BAND_KEYS[name]]
    assert common == ["blue", "green", "red", "nir08" if name == "landsat" else "nir"]
    assert set(item.assets) == {*BAND_KEYS[name], MASK_KEYS[name]}
    lon0, lat0, lon1, lat1 = item.bbox
    assert 14 < lon0 < lon1 < 16 and 45 < lat0 < lat1 < 46
    assert all(a.media_type == pystac.MediaType.COG for a in item.assets.values())
    assert all(Path(a.href).is_absolute() and Path(a.href).exists() for a in item.assets.values())


@pytest.mark.parametrize("name", BUILDERS)
@pytest.mark.parametrize("base", ["http://127.0.0.1:8123/s2a/", "s3://bucket/prefix"])
def test_hrefs_are_the_base_and_the_written_file_names(
    scene_512, tmp_path: Path, name: str, base: str
) -> None:
    item = BUILDERS[name](scene_512.image_path, tmp_path, href_base=base)

    hrefs = sorted(a["href"] for a in item["assets"].values())
    assert hrefs == sorted(f"{base.rstrip('/')}/{p.name}" for p in tmp_path.iterdir())


@pytest.mark.parametrize("name", BUILDERS)
def test_a_20_m_version_has_half_the_shape_and_twice_the_pixel_size(
    scene_512, tmp_path: Path, name: str
) -> None:
    item = BUILDERS[name](scene_512.image_path, tmp_path, factor=2)
    with rasterio.open(scene_512.image_path) as src:
        transform10 = src.transform

    for key in BAND_KEYS[name]:
        asset = item["assets"][key]
        assert asset["proj:shape"] == [256, 256]
        assert asset["proj:transform"] == list(transform10 @ Affine.scale(2))[:6]
        assert asset["gsd"] == 20.0
        with rasterio.open(asset["href"]) as src:
            assert (src.height, src.width, src.transform) == (
                256,
                256,
                transform10 @ Affine.scale(2),
            )
    if name != "planetary":
        assert item["assets"][BAND_KEYS[name][0]]["raster:bands"][0]["spatial_resolution"] == 20.0


def test_earth_search_stores_dn_plus_1000_and_declares_the_offset(
    built: dict[str, dict[str, Any]], scene_512
) -> None:
    item = built["earth-search"]
    scene = scene_band(scene_512, 0)
    dn = read(item["assets"]["blue"]["href"])
    valid = scene != 0

    assert (~valid).any() and valid.any()
    np.testing.assert_array_equal(dn[valid], scene[valid] + 1000)
    assert (dn[~valid] == 0).all()
    band = item["assets"]["blue"]["raster:bands"][0]
    assert (band["scale"], band["offset"], band["nodata"]) == (0.0001, -0.1, 0)
    assert item["properties"]["s2:processing_baseline"] == "05.00"


def test_earth_search_can_store_the_offset_without_declaring_it(scene_512, tmp_path: Path) -> None:
    item = earth_search_item(scene_512.image_path, tmp_path, declare_offset=False)

    band = item["assets"]["red"]["raster:bands"][0]
    assert "offset" not in band and band["scale"] == 0.0001
    scene, dn = scene_band(scene_512, 2), read(item["assets"]["red"]["href"])
    np.testing.assert_array_equal(dn[scene != 0], scene[scene != 0] + 1000)


def test_planetary_stores_dn_plus_1000_with_no_raster_bands(
    built: dict[str, dict[str, Any]], scene_512
) -> None:
    item = built["planetary"]
    scene, dn = scene_band(scene_512, 3), read(item["assets"]["B08"]["href"])

    np.testing.assert_array_equal(dn, np.where(scene != 0, scene + 1000, 0))
    assert not any("raster:bands" in a for a in item["assets"].values())
    assert item["properties"]["s2:processing_baseline"] == "04.00"
    assert item["assets"]["B08"]["eo:bands"][0]["name"] == "B08"


def test_landsat_dn_round_trip_to_the_scene_reflectance(
    built: dict[str, dict[str, Any]], scene_512
) -> None:
    item = built["landsat"]
    band = item["assets"]["SR_B4"]["raster:bands"][0]
    scene, dn = scene_band(scene_512, 2), read(item["assets"]["SR_B4"]["href"])
    valid = scene != 0

    reflectance = dn[valid] * band["scale"] + band["offset"]
    np.testing.assert_allclose(reflectance, scene[valid] * 1e-4, atol=1e-4, rtol=0)
    assert (dn[~valid] == 0).all()
    assert (band["scale"], band["offset"]) == (2.75e-05, -0.2)


def test_scl_is_9_in_the_cloud_box_4_elsewhere_0_on_nodata(
    built: dict[str, dict[str, Any]], scene_512
) -> None:
    asset = built["earth-search"]["assets"]["scl"]
    scl = read(asset["href"])
    # a 20 m cell is valid where any of its four 10 m pixels is
    valid = (scene_band(scene_512, 0) != 0).reshape(256, 2, 256, 2).any(axis=(1, 3))
    in_box = np.zeros_like(valid)
    in_box[80:130, 90:165] = True

    assert scl.shape == (256, 256) and scl.dtype == np.uint8
    assert asset["proj:shape"] == [256, 256]
    assert (scl[in_box & valid] == SCL_CLOUD_HIGH).all() and (in_box & valid).any()
    assert (scl[~in_box & valid] == SCL_VEGETATION).all()
    assert (scl[~valid] == SCL_NODATA).all() and (~valid).any()


def test_qa_pixel_sets_the_cloud_bit_in_the_cloud_box(
    built: dict[str, dict[str, Any]], scene_512
) -> None:
    qa = read(built["landsat"]["assets"]["QA_PIXEL"]["href"])
    valid = scene_band(scene_512, 0) != 0
    in_box = np.zeros_like(valid)
    in_box[160:260, 180:330] = True

    assert qa.dtype == np.uint16
    assert (qa[in_box & valid] == QA_CLOUD).all() and (in_box & valid).any()
    assert (qa[~in_box & valid] == QA_CLEAR).all()
    assert (qa[~valid] == QA_FILL).all()
    assert QA_CLOUD & 1 << 3 and not QA_CLEAR & 1 << 3
    assert built["landsat"]["assets"]["QA_PIXEL"]["raster:bands"][0]["nodata"] == QA_FILL


def test_items_write_as_json_ndjson_and_an_item_collection(
    built: dict[str, dict[str, Any]], tmp_path: Path
) -> None:
    items = list(built.values())

    one = pystac.Item.from_file(str(write_item(items[0], tmp_path / "item.json")))
    lines = write_ndjson(items, tmp_path / "items.ndjson").read_text().splitlines()
    collection = pystac.ItemCollection.from_file(
        str(write_item_collection(items, tmp_path / "items.geojson"))
    )

    assert one.id == items[0]["id"]
    assert [json.loads(line)["id"] for line in lines] == [i["id"] for i in items]
    assert [i.id for i in collection] == [i["id"] for i in items]


def test_the_scene_grid_bands_are_rejected_when_names_do_not_match(
    scene_512, tmp_path: Path
) -> None:
    from tests.support.stac_items import write_band_cogs

    with pytest.raises(ValueError, match="3 names for 4 bands"):
        write_band_cogs(scene_512.image_path, tmp_path, ["a", "b", "c"])
