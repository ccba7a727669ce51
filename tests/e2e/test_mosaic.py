"""End to end: `geoseg run --mosaic` on two overlapping STAC items with clouds in different
places, cut from one synthetic landscape (so both windows agree on the labels)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pyogrio
import pytest
import rasterio
import shapely
from pyproj import Transformer
from rasterio.windows import Window

from geoseg.classes import CLASS_NODATA, ClassInfo
from geoseg.errors import ConfigError, ModelPackageError
from geoseg.geo.scene import SceneGrid
from geoseg.io.aoi import aoi_in_crs, aoi_mask, read_aoi
from geoseg.io.outputs import classes_tags
from geoseg.mosaic import SOURCE_NODATA, MosaicSource, write_mosaic
from geoseg.synthetic import SYNTHETIC_CLASSES, write_synthetic_scene
from geoseg.training.metrics import confusion_matrix
from tests.support.cli import geoseg_cli
from tests.support.polygons import assert_same_polygons, gdal_polygonize_file
from tests.support.rasters import gdalwarp_near
from tests.support.stac_items import earth_search_item, write_item

pytestmark = pytest.mark.slow

IDS = [c.id for c in SYNTHETIC_CLASSES]
WINDOWS = {"A": Window(0, 0, 288, 320), "B": Window(128, 0, 288, 320)}
"""Two windows (col_off, row_off, width, height) of one 416 x 320 landscape: 160 cols shared."""
CLOUDS = {"A": (30, 130, 150, 270), "B": (190, 290, 20, 140)}
"""(row0, row1, col0, col1) in each window's pixels: both inside the shared columns, apart."""


def _crop(src: Path, window: Window, dst: Path) -> Path:
    with rasterio.open(src) as ds:
        profile = ds.profile | {
            "width": int(window.width),
            "height": int(window.height),
            "transform": ds.window_transform(window),
        }
        data = ds.read(window=window)
    with rasterio.open(dst, "w", **profile) as out:
        out.write(data)
    return dst


@pytest.fixture(scope="module")
def landscape(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("mosaic")
    x, y = Transformer.from_crs(4326, 32633, always_xy=True).transform(15.0, 45.03)
    scene = write_synthetic_scene(
        root / "land", size_px=(320, 416), seed=41, epsg=32633,
        origin=(round(x / 10) * 10.0, round(y / 10) * 10.0),
    )  # fmt: skip
    items = []
    for name, window in WINDOWS.items():
        part = _crop(scene.image_path, window, root / f"{name}.tif")
        item = earth_search_item(
            part, root / f"item_{name}", item_id=name, cloud_box=CLOUDS[name],
            datetime="2024-06-01T10:00:00Z" if name == "A" else "2024-06-11T10:00:00Z",
        )  # fmt: skip
        items.append(write_item(item, root / f"{name}.json"))
    return root, scene, items


@pytest.fixture(scope="module")
def mosaic_run(landscape, demo_model: Path):
    root, scene, items = landscape
    out = root / "out"
    geoseg_cli(
        "run", "--aoi", scene.aoi_path, *_scenes(items), "--model", demo_model,
        "--out", out, "--device", "cpu", "--mosaic", check=True,
    )  # fmt: skip
    return out


def _scenes(items: list[Path]) -> list[str | Path]:
    return [arg for item in items for arg in ("--scenes", item)]


def _miou(pred: np.ndarray, labels: np.ndarray, where: np.ndarray) -> float:
    """Mean IoU over the pixels ``where``; a pixel a map leaves nodata counts as missed (a
    false negative of its label), so a map that covers less of the AOI scores less."""
    n = len(IDS)
    lut = np.full(256, n, dtype=np.int64)  # index n: no class (nodata)
    lut[IDS] = np.arange(n)
    ignore = ~where | (labels == CLASS_NODATA)
    matrix = confusion_matrix(lut[labels], lut[pred], n + 1, ignore=ignore)
    tp = np.diag(matrix)[:n].astype(float)
    union = matrix[:n].sum(axis=1) + matrix[:, :n].sum(axis=0) - np.diag(matrix)[:n]
    return float(np.mean(tp[union > 0] / union[union > 0]))


def test_mosaic_outputs_and_grid(mosaic_run) -> None:
    folder = mosaic_run / "mosaic"
    for name in ("classes.tif", "confidence.tif", "source.tif", "polygons.gpkg",
                 "polygons.qml", "classes.qml", "preview.png"):  # fmt: skip
        assert (folder / name).is_file(), name
    with rasterio.open(folder / "classes.tif") as ds, rasterio.open(folder / "source.tif") as src:
        assert ds.crs.to_epsg() == 32633 and ds.res == (10.0, 10.0)  # the AOI's UTM zone
        assert ds.transform.c % 10 == 0 and ds.transform.f % 10 == 0  # snapped origin
        assert ds.nodata == CLASS_NODATA and ds.tags(ns="IMAGE_STRUCTURE")["LAYOUT"] == "COG"
        assert src.dtypes == ("uint16",) and src.nodata == SOURCE_NODATA
        table = json.loads(src.tags()["GEOSEG_SOURCES"])
    assert [t["scene"] for t in table] == ["A", "B"] and table[1]["item"] == "B"
    doc = json.loads((mosaic_run / "run.json").read_text())
    assert doc["mosaic"]["sources"] == table and doc["mosaic"]["polygons"] > 0
    assert doc["mosaics"] == [str(folder)]


def test_mosaic_is_gap_free_where_a_scene_was_clear_and_follows_its_sources(
    mosaic_run, landscape, tmp_path: Path
) -> None:
    _, scene, _ = landscape
    folder = mosaic_run / "mosaic"
    with rasterio.open(folder / "classes.tif") as ds:
        mosaic, transform, crs = ds.read(1), ds.transform, ds.crs
    with rasterio.open(folder / "source.tif") as ds:
        source = ds.read(1)
    placed = [
        gdalwarp_near(mosaic_run / name / "classes.tif", folder / "classes.tif", tmp_path, name)
        for name in ("A", "B")
    ]
    inside = aoi_mask(aoi_in_crs(read_aoi(scene.aoi_path), crs), transform, mosaic.shape)
    clear = [p != CLASS_NODATA for p in placed]  # inside the scene, the AOI and not cloudy
    assert all((~c & inside).sum() > 1000 for c in clear)  # each scene has its cloud
    np.testing.assert_array_equal(mosaic != CLASS_NODATA, inside & (clear[0] | clear[1]))
    np.testing.assert_array_equal(source == SOURCE_NODATA, mosaic == CLASS_NODATA)
    for i, p in enumerate(placed):
        here = source == i
        assert here.sum() > 1000
        np.testing.assert_array_equal(mosaic[here], p[here])
    labels = gdalwarp_near(scene.labels_path, folder / "classes.tif", tmp_path, "labels")
    over_aoi = [_miou(p, labels, inside) for p in (mosaic, *placed)]
    assert over_aoi[0] >= max(over_aoi[1:]), over_aoi  # over the AOI, gaps are misses
    both = clear[0] & clear[1]  # where both saw the ground: the choice by confidence
    on_both = [_miou(p, labels, both) for p in (mosaic, *placed)]
    assert on_both[0] >= min(on_both[1:]), on_both


def test_mosaic_polygons_equal_gdal_polygonize_with_areas_and_sources(
    mosaic_run, tmp_path: Path
) -> None:
    folder = mosaic_run / "mosaic"
    gpkg = folder / "polygons.gpkg"
    info = pyogrio.read_info(gpkg, layer="landcover")
    _, _, wkb, fields = pyogrio.raw.read(gpkg, layer="landcover")
    names = list(info["fields"])
    ours = shapely.from_wkb(wkb)
    theirs, values = gdal_polygonize_file("gdal_polygonize.py", folder / "classes.tif", tmp_path)
    keep = values != CLASS_NODATA
    assert_same_polygons(ours, theirs[keep])
    with rasterio.open(folder / "classes.tif") as ds, rasterio.open(folder / "source.tif") as s:
        classes, source, transform = ds.read(1), s.read(1), ds.transform
    class_id = fields[names.index("class_id")]
    area = fields[names.index("area_m2")]
    for c in IDS:
        assert area[class_id == c].sum() == pytest.approx((classes == c).sum() * 100.0)
    sources = fields[names.index("source")]
    assert set(sources) == {"A", "B"}
    for i in np.argsort(-area)[:10]:  # the largest regions: the majority of their pixels
        pixels = rasterio.features.geometry_mask([ours[i]], classes.shape, transform, invert=True)
        counts = np.bincount(source[pixels], minlength=2)[:2]
        assert sources[i] == "AB"[int(np.argmax(counts))]


def test_prefer_newest_takes_the_newer_scene_where_both_are_clear(
    mosaic_run, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    doc = json.loads((mosaic_run / "run.json").read_text())
    grid = _grid_of(mosaic_run / "mosaic/classes.tif")
    dated = [
        MosaicSource(s["scene"], mosaic_run / s["scene"] / "classes.tif",
                     mosaic_run / s["scene"] / "confidence.tif", s["datetime"])
        for s in doc["mosaic"]["sources"]
    ]  # fmt: skip
    aoi = shapely.box(*grid.bounds)
    record = write_mosaic(tmp_path, dated, grid, aoi, classes=SYNTHETIC_CLASSES, prefer="newest")
    assert record["prefer"] == "newest"
    like = tmp_path / "mosaic/classes.tif"
    placed = [gdalwarp_near(s.classes, like, tmp_path, s.name) for s in dated]
    with rasterio.open(tmp_path / "mosaic/source.tif") as ds:
        source = ds.read(1)
    both = (placed[0] != CLASS_NODATA) & (placed[1] != CLASS_NODATA)
    assert both.sum() > 1000 and (source[both] == 1).all()  # B (June 11) is newer than A
    undated = [MosaicSource(s.name, s.classes, s.confidence) for s in dated]
    with caplog.at_level(logging.WARNING, logger="geoseg.mosaic.build"):
        record = write_mosaic(
            tmp_path / "undated", undated, grid, aoi, classes=SYNTHETIC_CLASSES, prefer="newest"
        )
    assert record["prefer"] == "confidence"
    assert [r.message for r in caplog.records if "no acquisition date" in r.message]


def _grid_of(path: Path) -> SceneGrid:
    with rasterio.open(path) as ds:
        return SceneGrid(ds.crs, ds.transform, ds.height, ds.width)


def test_scenes_of_a_model_with_other_classes_are_refused(mosaic_run, tmp_path: Path) -> None:
    """The library call refuses them before writing (a run's scenes share one model, whose
    ensemble members `check_inputs` already made agree)."""
    grid = _grid_of(mosaic_run / "mosaic/classes.tif")
    renamed = tuple(ClassInfo(c.id, f"{c.name}-2", c.color) for c in SYNTHETIC_CLASSES)
    with rasterio.open(mosaic_run / "B/classes.tif") as src:
        profile, data = src.profile | {"driver": "GTiff"}, src.read()
    other = tmp_path / "other-classes.tif"
    with rasterio.open(other, "w", **profile) as dst:
        dst.write(data)
        dst.update_tags(**classes_tags(renamed))
    sources = [
        MosaicSource("A", mosaic_run / "A/classes.tif", mosaic_run / "A/confidence.tif"),
        MosaicSource("B", other, mosaic_run / "B/confidence.tif"),
    ]
    out = tmp_path / "out"
    with pytest.raises(ModelPackageError, match="scene B was predicted with other classes"):
        write_mosaic(out, sources, grid, shapely.box(*grid.bounds), classes=SYNTHETIC_CLASSES)
    assert not (out / "mosaic").exists()


def test_a_geographic_crs_is_refused_before_any_output(landscape, demo_model: Path) -> None:
    root, scene, items = landscape
    out = root / "refused"
    proc = geoseg_cli(
        "run", "--aoi", scene.aoi_path, *_scenes(items), "--model", demo_model,
        "--out", out, "--device", "cpu", "--mosaic", "--crs", "EPSG:4326",
    )  # fmt: skip
    assert proc.returncode != 0
    assert "--crs EPSG:4326: a geographic CRS" in proc.stderr and "EPSG:326zz" in proc.stderr
    assert not out.exists() or not any(out.iterdir())


def test_mosaic_options_without_mosaic_are_refused(landscape, demo_model: Path) -> None:
    root, scene, items = landscape
    out = root / "no-mosaic"
    proc = geoseg_cli(
        "run", "--aoi", scene.aoi_path, *_scenes(items), "--model", demo_model,
        "--out", out, "--device", "cpu", "--prefer", "newest",
    )  # fmt: skip
    assert proc.returncode != 0
    assert "--prefer only applies to the AOI mosaic: add --mosaic" in proc.stderr
    assert not out.exists() or not any(out.iterdir())


def test_a_mosaic_that_fails_midway_leaves_nothing(mosaic_run, tmp_path: Path) -> None:
    """The vectorizer refuses after the merge wrote its rasters: no OUT/mosaic, no staging."""
    grid = _grid_of(mosaic_run / "mosaic/classes.tif")
    sources = [
        MosaicSource(n, mosaic_run / n / "classes.tif", mosaic_run / n / "confidence.tif")
        for n in ("A", "B")
    ]
    out = tmp_path / "out"
    with pytest.raises(ConfigError, match="extra attribute 'source'"):
        write_mosaic(
            out, sources, grid, shapely.box(*grid.bounds), classes=SYNTHETIC_CLASSES,
            extra_attributes={"source": "x"},
        )  # fmt: skip
    assert list(out.iterdir()) == []
