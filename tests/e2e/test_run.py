"""End to end: `geoseg run` on synthetic scenes the demo model never saw, checked for real."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pyogrio
import pytest
import rasterio
import shapely
from pyproj import Transformer

from geoseg.demo import agreement
from geoseg.io.aoi import aoi_in_crs, aoi_mask, read_aoi
from geoseg.synthetic import SYNTHETIC_CLASSES, write_synthetic_scene
from geoseg.training.metrics import scores
from tests.support.cli import geoseg_cli, write_geojson
from tests.support.polygons import assert_same_polygons, gdal_polygonize_file
from tests.support.rasters import gdalwarp_near

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def run_out(tmp_path_factory: pytest.TempPathFactory, scene_512, demo_model: Path):
    out = tmp_path_factory.mktemp("run") / "out"
    proc = geoseg_cli(
        "run",
        "--aoi", scene_512.aoi_path,
        "--scenes", scene_512.image_path,
        "--model", demo_model,
        "--out", out,
        "--device", "cpu",
        check=True,
    )  # fmt: skip
    return out, proc


def test_outputs_and_summary(run_out) -> None:
    out, proc = run_out
    scene_dir = out / "scene"
    for name in ("classes.tif", "confidence.tif", "polygons.gpkg", "polygons.qml", "classes.qml"):
        assert (scene_dir / name).is_file(), name
    assert (out / "run.json").is_file()
    assert not [p for p in out.rglob("*") if "partial" in p.name]  # no temp leftovers
    assert "Mpx/s" in proc.stdout and "polygons" in proc.stdout and "classes found" in proc.stdout


def test_class_raster_is_a_cog_on_the_scene_grid(run_out, scene_512) -> None:
    out, _ = run_out
    with (
        rasterio.open(scene_512.image_path) as scene,
        rasterio.open(out / "scene/classes.tif") as ds,
    ):
        assert ds.crs == scene.crs
        assert ds.res == scene.res
        col = (ds.transform.c - scene.transform.c) / scene.res[0]
        row = (scene.transform.f - ds.transform.f) / scene.res[1]
        assert col == pytest.approx(round(col), abs=1e-9)  # aligned to the scene's pixel grid
        assert row == pytest.approx(round(row), abs=1e-9)
        assert ds.dtypes == ("uint8",)
        assert ds.nodata == 255
        assert ds.tags(ns="IMAGE_STRUCTURE").get("LAYOUT") == "COG"
        assert ds.overviews(1), "COG has overviews"
        cmap = ds.colormap(1)
        for c in SYNTHETIC_CLASSES:
            assert cmap[c.id][:3] == c.rgb
    assert "<Category>water</Category>" in (out / "scene/classes.tif.aux.xml").read_text()


def test_nodata_where_input_is_nodata_or_outside_the_aoi(run_out, scene_512) -> None:
    out, _ = run_out
    with rasterio.open(out / "scene/classes.tif") as ds:
        classes = ds.read(1)
        transform, crs = ds.transform, ds.crs
        bounds = ds.bounds
    with rasterio.open(scene_512.image_path) as scene:
        window = rasterio.windows.from_bounds(*bounds, transform=scene.transform)
        input_valid = scene.read_masks(1, window=window.round_offsets().round_lengths()) > 0
    inside = aoi_mask(aoi_in_crs(read_aoi(scene_512.aoi_path), crs), transform, classes.shape)
    expected_nodata = ~(inside & input_valid)
    assert (~input_valid).any() and (~inside).any()  # the test exercises both
    np.testing.assert_array_equal(classes == 255, expected_nodata)
    with rasterio.open(out / "scene/confidence.tif") as ds:
        conf = ds.read(1)
        assert ds.tags(ns="IMAGE_STRUCTURE").get("LAYOUT") == "COG"
    assert conf.max() <= 100
    assert np.all(conf[expected_nodata] == 0)
    assert conf[~expected_nodata].min() >= 20  # max of 5 probabilities is >= 20 %


def test_agreement_with_the_synthetic_labels(run_out, scene_512) -> None:
    out, _ = run_out
    matrix = agreement(
        out / "scene/classes.tif", scene_512.labels_path, [c.id for c in SYNTHETIC_CLASSES]
    )
    s = scores(matrix)
    assert s.miou >= 0.8, f"mIoU {s.miou:.3f}, IoU per class {np.round(s.iou, 3)}"


def test_polygons_are_valid_and_areas_match_pixels(run_out) -> None:
    out, _ = run_out
    gpkg = out / "scene/polygons.gpkg"
    info = pyogrio.read_info(gpkg, layer="landcover")
    with rasterio.open(out / "scene/classes.tif") as ds:
        classes = ds.read(1)
        pixel_area = abs(ds.res[0] * ds.res[1])
        assert rasterio.crs.CRS.from_user_input(info["crs"]) == ds.crs
    _, _, wkb, fields = pyogrio.raw.read(gpkg, layer="landcover")
    names = list(info["fields"])
    geoms = shapely.from_wkb(wkb)
    assert shapely.is_valid(geoms).all()
    class_id = fields[names.index("class_id")]
    area = fields[names.index("area_m2")]
    conf = fields[names.index("mean_confidence")]
    np.testing.assert_allclose(area, shapely.area(geoms), rtol=1e-9)
    assert np.all((conf >= 0) & (conf <= 100))
    assert 255 not in set(class_id.tolist())
    for c in SYNTHETIC_CLASSES:
        pixels = int((classes == c.id).sum())
        polygon_area = float(area[class_id == c.id].sum())
        assert polygon_area == pytest.approx(pixels * pixel_area, rel=1e-3), c.name


def test_run_json_records_inputs_model_and_timings(run_out, demo_model: Path) -> None:
    out, _ = run_out
    doc = json.loads((out / "run.json").read_text())
    assert doc["model"]["sha256"] == hashlib.sha256(demo_model.read_bytes()).hexdigest()
    assert doc["settings"]["resolved"]["tile_px"] > 0
    assert {"geoseg", "torch", "gdal", "rasterio"} <= set(doc["versions"])
    (scene,) = doc["scenes"]
    assert scene["polygons"] > 0 and scene["timings_s"]["predict"] > 0
    assert doc["inputs"]["aoi"].endswith("aoi.geojson")


def _utm_scene(folder: Path, epsg: int, lon: float, lat: float, seed: int):
    """A synthetic 384 px scene whose upper-left corner is at (lon, lat) in UTM zone ``epsg``."""
    x, y = Transformer.from_crs(4326, epsg, always_xy=True).transform(lon, lat)
    origin = (round(x / 10) * 10.0, round(y / 10) * 10.0)
    return write_synthetic_scene(folder, size_px=384, seed=seed, epsg=epsg, origin=origin)


def test_aoi_across_two_utm_zones_gives_one_mosaic_with_whole_polygons(
    tmp_path: Path, demo_model: Path
) -> None:
    # zone 32N ends and zone 33N starts at 12 deg E; each scene is ~3.8 km wide
    west = _utm_scene(tmp_path / "west", 32632, 11.955, 45.03, seed=21)
    east = _utm_scene(tmp_path / "east", 32633, 12.0, 45.03, seed=22)
    ring = [[11.975, 45.005], [12.03, 45.005], [12.03, 45.025], [11.975, 45.025], [11.975, 45.005]]
    aoi = write_geojson(tmp_path / "aoi.geojson", [{"type": "Polygon", "coordinates": [ring]}])
    (tmp_path / "scenes").mkdir()
    west.image_path.rename(tmp_path / "scenes/west.tif")
    east.image_path.rename(tmp_path / "scenes/east.tif")
    out = tmp_path / "out"
    proc = geoseg_cli(
        "run", "--aoi", aoi, "--scenes", tmp_path / "scenes", "--model", demo_model,
        "--out", out, "--device", "cpu", "--mosaic", check=True,
    )  # fmt: skip
    assert "EPSG:32633" in proc.stdout and "% of the AOI without a clear scene" in proc.stdout
    doc = json.loads((out / "run.json").read_text())
    assert sorted(s["scene"] for s in doc["scenes"]) == ["east", "west"]
    for name, epsg in (("west", 32632), ("east", 32633)):
        with rasterio.open(out / name / "classes.tif") as ds:
            assert ds.crs.to_epsg() == epsg
            assert (ds.read(1) != 255).sum() > 1000
    # one mosaic, in the zone of the AOI's centroid (12.0025 E: zone 33N)
    with rasterio.open(out / "mosaic/classes.tif") as ds:
        assert ds.crs.to_epsg() == 32633 and ds.res == (10.0, 10.0)
        classes = ds.read(1)
    with rasterio.open(out / "mosaic/source.tif") as ds:
        source = ds.read(1)
    names = [s["scene"] for s in doc["mosaic"]["sources"]]
    # the two scenes cover the AOI: no pixel inside it is nodata, not even along its edge where
    # the west scene is reprojected (it is predicted a pixel diagonal beyond the AOI)
    assert doc["mosaic"]["nodata_in_aoi_px"] == 0 and doc["mosaic"]["aoi_px"] > 90_000
    assert {names[i] for i in np.unique(source[classes != 255])} == {"east", "west"}
    # each pixel is the class of the scene source.tif names there, placed by gdalwarp -r near
    # (the west scene is reprojected from zone 32N)
    for i, name in enumerate(names):
        placed = gdalwarp_near(
            out / name / "classes.tif", out / "mosaic/classes.tif", tmp_path, name
        )
        np.testing.assert_array_equal(classes[source == i], placed[source == i], err_msg=name)
    gpkg = out / "mosaic/polygons.gpkg"
    polygons = pyogrio.read_dataframe(gpkg, layer="landcover")
    theirs, values = gdal_polygonize_file(
        "gdal_polygonize.py", out / "mosaic/classes.tif", tmp_path
    )
    assert_same_polygons(polygons.geometry.values, theirs[values != 255])
    # the zone border, projected into 32633, cuts polygons that stay whole (area on both sides)
    border = shapely.LineString([(12.0, 44.9), (12.0, 45.1)])
    border = shapely.transform(
        border, lambda xy: np.column_stack(
            Transformer.from_crs(4326, 32633, always_xy=True).transform(xy[:, 0], xy[:, 1])
        )
    )  # fmt: skip
    crossing = polygons[polygons.intersects(border)]
    assert len(crossing) > 3
    x_border = border.centroid.x
    west_side = shapely.box(x_border - 1e5, 0, x_border, 1e8)
    both_sides = [g for g in crossing.geometry if 0 < g.intersection(west_side).area < g.area - 1.0]
    assert len(both_sides) > 3, "no polygon crosses the UTM zone border whole"


def test_outputs_pass_gdals_cog_validator(run_out) -> None:
    """GDAL's own validate_cloud_optimized_geotiff (Debian python3-gdal) accepts both rasters."""
    import shutil
    import subprocess

    python = shutil.which("python3", path="/usr/bin")
    check = subprocess.run(
        [python or "python3", "-c", "import osgeo_utils.samples.validate_cloud_optimized_geotiff"],
        capture_output=True,
        check=False,
    )
    if check.returncode != 0:
        pytest.skip("Debian's python3-gdal is not installed (make test installs it)")
    out, _ = run_out
    for name in ("classes.tif", "confidence.tif"):
        validator = "osgeo_utils.samples.validate_cloud_optimized_geotiff"
        proc = subprocess.run(
            [python, "-m", validator, "--full-check=yes", str(out / "scene" / name)],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert "is a valid cloud optimized GeoTIFF" in proc.stdout
