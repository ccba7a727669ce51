"""Training data: windows, spatial split, label mapping, polygons, sampling, augmentation."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyogrio
import pyogrio.raw
import pytest
import rasterio
import rasterio.features
import shapely
from affine import Affine

from geoseg.classes import ClassInfo
from geoseg.errors import ConfigError, TrainingDataError
from geoseg.geo.grid import BlockGrid, stride_starts
from geoseg.geo.window import PixelWindow, format_window, parse_window
from geoseg.synthetic import SYNTHETIC_CLASSES, write_synthetic_scene
from geoseg.training.augment import Augmentation
from geoseg.training.data import (
    SamplingMode,
    SplitSettings,
    TileRef,
    TrainingData,
    TrainingScene,
    split_blocks,
)
from geoseg.training.labels import IGNORE, LabelConfig, read_class_list

CRS = "EPSG:32633"
TRANSFORM = Affine(10, 0, 500000, 0, -10, 5001000)
THREE = (
    ClassInfo(1, "water", "#0000ff"),
    ClassInfo(2, "forest", "#00ff00"),
    ClassInfo(3, "urban", "#ff0000"),
)


def write_raster(
    path: Path, data: np.ndarray, *, nodata: float | None = None, transform: Affine = TRANSFORM
) -> Path:
    data = data if data.ndim == 3 else data[None]
    with rasterio.open(
        path,
        "w",
        driver="GTiff",
        count=data.shape[0],
        height=data.shape[1],
        width=data.shape[2],
        dtype=data.dtype,
        crs=CRS,
        transform=transform,
        nodata=nodata,
    ) as ds:
        ds.write(data)
    return path


@pytest.fixture(scope="module")
def scene(tmp_path_factory: pytest.TempPathFactory):
    return write_synthetic_scene(tmp_path_factory.mktemp("data"), size_px=192, seed=5)


@pytest.fixture
def small_pair(tmp_path: Path) -> tuple[Path, Path, np.ndarray, np.ndarray]:
    """A 40x60 px 2-band image and labels with values 0 (nodata), 1, 2, 3."""
    rng = np.random.default_rng(0)
    labels = np.zeros((40, 60), dtype=np.uint8)
    labels[:, 10:30] = 2
    labels[:, 30:] = 1
    labels[5:9, 40:44] = 3
    image = (rng.integers(100, 200, (2, 40, 60)) + labels * 100).astype(np.uint16)
    return (
        write_raster(tmp_path / "image.tif", image),
        write_raster(tmp_path / "labels.tif", labels),
        image,
        labels,
    )


# ------------------------------------------------------------------------------------ windows


def test_parse_window() -> None:
    shape = (1428, 1128)
    assert parse_window(None, shape) == PixelWindow(0, 0, 1428, 1128)
    assert parse_window("cols=0:677", shape) == PixelWindow(0, 0, 1428, 677)
    assert parse_window("cols=677:", shape) == PixelWindow(0, 677, 1428, 451)
    assert parse_window("rows=100:-100, cols=:10", shape) == PixelWindow(100, 0, 1228, 10)
    window = PixelWindow(3, 4, 5, 6)
    assert parse_window(format_window(window), shape) == window
    with pytest.raises(ConfigError, match="cols=0:677"):
        parse_window("x=1:2", shape)
    with pytest.raises(ConfigError, match="empty"):
        parse_window("cols=700:600", shape)


def test_blocks_cover_the_region_once() -> None:
    region = PixelWindow(10, 20, 300, 130)
    cover = np.zeros((400, 200), dtype=int)
    for b in BlockGrid.covering(region, 64).windows():
        cover[b.row_off : b.row_end, b.col_off : b.col_end] += 1
    assert cover[10:310, 20:150].min() == 1 and cover.sum() == 300 * 130
    assert stride_starts(0, 100, 64, 32) == [0, 32, 36]
    assert stride_starts(0, 50, 64, 32) == [0]


def test_split_is_spatial_seeded_and_disjoint() -> None:
    region = PixelWindow(0, 0, 512, 640)
    settings = SplitSettings(block_px=128, val_fraction=0.25, seed=3)
    train, val = split_blocks(region, settings)
    assert len(train) + len(val) == 20 and len(val) == 5
    assert not set(train) & set(val)
    assert split_blocks(region, settings) == (train, val)
    assert split_blocks(region, SplitSettings(128, 0.25, seed=4)) != (train, val)
    # one block only: nothing to hold out
    assert split_blocks(PixelWindow(0, 0, 50, 50), settings)[1] == []


# ------------------------------------------------------------------------------ labels/stats


def test_statistics_and_counts_stream_over_training_blocks(small_pair) -> None:
    image_path, labels_path, image, labels = small_pair
    config = LabelConfig(THREE, nodata=frozenset({0}))
    split = SplitSettings(block_px=20, val_fraction=0.25, seed=0)
    with TrainingData(
        [TrainingScene(image_path, labels_path)],
        config,
        band_indexes=[1, 2],
        split=split,
        tile_px=16,
    ) as data:
        train_mask = np.zeros(labels.shape, dtype=bool)
        for b in split_blocks(PixelWindow(0, 0, 40, 60), split)[0]:
            train_mask[b.row_off : b.row_end, b.col_off : b.col_end] = True
        expected = [int(((labels == v) & train_mask).sum()) for v in (1, 2, 3)]
        assert data.train_counts.tolist() == expected
        assert data.val_counts.sum() == (labels[~train_mask] > 0).sum()
        pixels = image[:, train_mask].astype(np.float64)
        assert data.normalization.mean == pytest.approx(pixels.mean(axis=1).tolist())
        assert data.normalization.std == pytest.approx(pixels.std(axis=1).tolist(), rel=1e-6)
        summary = data.summary()
        assert summary["labels"]["label_nodata"] == [0]
        assert sum(summary["train_pixels"].values()) == sum(expected)


def test_training_reads_hide_validation_labels(small_pair) -> None:
    image_path, labels_path, _, labels = small_pair
    split = SplitSettings(block_px=20, val_fraction=0.5, seed=1)
    with TrainingData(
        [TrainingScene(image_path, labels_path)],
        LabelConfig(THREE, nodata=frozenset({0})),
        band_indexes=[1, 2],
        split=split,
        tile_px=16,
    ) as data:
        _, val = split_blocks(PixelWindow(0, 0, 40, 60), split)
        whole = PixelWindow(0, 0, 40, 60)
        x, y = data.read(TileRef(0, whole))
        assert x.shape == (2, 40, 60)
        for b in val:
            assert (y[b.row_off : b.row_end, b.col_off : b.col_end] == IGNORE).all()
        # class indices: value 1 -> 0, 2 -> 1, 3 -> 2; nodata -> IGNORE
        visible = y != IGNORE
        assert (y[visible] == labels[visible] - 1).all()
        # validation tiles score their block only, with labels
        for ref in data.validation_tiles():
            _, yv = data.read(ref)
            assert ref.scored is not None
            inside = np.zeros(yv.shape, dtype=bool)
            inside[ref.scored.relative_to(ref.window)] = True
            assert (yv[~inside] == IGNORE).all()
            block = labels[
                ref.scored.row_off : ref.scored.row_end, ref.scored.col_off : ref.scored.col_end
            ]
            assert (yv[inside] == np.where(block == 0, IGNORE, block - 1).ravel()).all()


def test_window_restricts_training_to_a_region(small_pair) -> None:
    image_path, labels_path, _, _ = small_pair
    with TrainingData(
        [TrainingScene(image_path, labels_path, "cols=30:")],
        LabelConfig(THREE, nodata=frozenset({0})),
        band_indexes=[1, 2],
        split=SplitSettings(block_px=10, val_fraction=0.2),
        tile_px=16,
    ) as data:
        # columns 30.. hold only water (value 1) and urban (3)
        assert data.train_counts[1] == 0 and data.val_counts[1] == 0
        rng = np.random.default_rng(0)
        sampler = data.sampler(SamplingMode.RANDOM, rng)
        for _ in range(50):
            assert next(sampler).window.col_off >= 30


def test_label_map_and_unknown_values(small_pair) -> None:
    image_path, labels_path, _, _ = small_pair
    scenes = [TrainingScene(image_path, labels_path)]
    merged = LabelConfig(THREE, value_map={1: 1, 2: 2, 3: 2}, nodata=frozenset({0}))
    with TrainingData(scenes, merged, band_indexes=[1], split=SplitSettings(20, 0.25)) as data:
        total = data.train_counts + data.val_counts
        assert total[2] == 0 and total[1] == 40 * 20 + 16  # urban mapped into forest
    with pytest.raises(TrainingDataError, match=r"labels.tif: label values \[0\]"):
        TrainingData(scenes, LabelConfig(THREE), band_indexes=[1])
    with pytest.raises(TrainingDataError, match=r"label values \[3\].*label_nodata"):
        TrainingData(
            scenes,
            LabelConfig(THREE, value_map={1: 1, 2: 2}, nodata=frozenset({0})),
            band_indexes=[1],
        )
    with pytest.raises(ConfigError, match="class ids \\[9\\]"):
        LabelConfig(THREE, value_map={1: 9})


def test_grid_and_crs_mismatch_are_clear_errors(small_pair, tmp_path: Path) -> None:
    image_path, _, _, labels = small_pair
    shifted = write_raster(
        tmp_path / "shifted.tif", labels, transform=TRANSFORM @ Affine.translation(1, 0)
    )
    with pytest.raises(TrainingDataError, match="resample the labels onto the image grid"):
        TrainingData(
            [TrainingScene(image_path, shifted)],
            LabelConfig(THREE, nodata=frozenset({0})),
            band_indexes=[1],
        )
    with pytest.raises(TrainingDataError, match="has 2 band"):
        TrainingData(
            [TrainingScene(image_path, tmp_path / "labels.tif")],
            LabelConfig(THREE, nodata=frozenset({0})),
            band_indexes=[1, 2, 3],
        )


# ---------------------------------------------------------------------------------- polygons


def write_polygons(path: Path, geoms: list, values: list, column: str = "class", crs=CRS) -> Path:
    kind = "Polygon" if all(g.geom_type == "Polygon" for g in geoms) else "MultiPolygon"
    pyogrio.raw.write(
        path,
        geometry=shapely.to_wkb(np.array(geoms, dtype=object)),
        field_data=[np.array(values, dtype=object if isinstance(values[0], str) else None)],
        fields=[column],
        crs=crs,
        geometry_type=kind,
    )
    return path


def test_polygon_labels_rasterize_like_a_raster(small_pair, tmp_path: Path) -> None:
    image_path, labels_path, _, labels = small_pair
    shapes = rasterio.features.shapes(labels, transform=TRANSFORM)
    geoms, values = [], []
    for geom, value in shapes:
        if value:
            geoms.append(shapely.geometry.shape(geom))
            values.append(int(value))
    gpkg = write_polygons(tmp_path / "labels.gpkg", geoms, values)
    config = LabelConfig(THREE, nodata=frozenset({0}))
    split = SplitSettings(20, 0.25)
    with (
        TrainingData(
            [TrainingScene(image_path, labels_path)], config, band_indexes=[1], split=split
        ) as a,
        TrainingData([TrainingScene(image_path, gpkg)], config, band_indexes=[1], split=split) as b,
    ):
        assert a.train_counts.tolist() == b.train_counts.tolist()
        window = TileRef(0, PixelWindow(3, 7, 30, 33))
        assert (a.read(window)[1] == b.read(window)[1]).all()


def test_polygon_class_names_reprojection_and_errors(small_pair, tmp_path: Path) -> None:
    image_path, _, _, _ = small_pair
    left, top = TRANSFORM @ (0, 0)
    box = shapely.box(left + 100, top - 300, left + 300, top - 100)  # cols 10..30, rows 10..30
    gpkg = write_polygons(tmp_path / "names.gpkg", [box], ["Forest"], column="landcover")
    config = LabelConfig(THREE, class_column="landcover")
    with TrainingData([TrainingScene(image_path, gpkg)], config, band_indexes=[1]) as data:
        y = data.read(TileRef(0, PixelWindow(0, 0, 40, 60)))[1]
        assert (y[10:30, 10:30] == 1).all() and (y == 1).sum() == 400
    # the same box in lon/lat is reprojected onto the image grid
    from pyproj import Transformer

    to_ll = Transformer.from_crs(CRS, "EPSG:4326", always_xy=True)
    box_ll = shapely.transform(
        shapely.segmentize(box, 5), lambda xy: np.column_stack(to_ll.transform(*xy.T))
    )
    geojson = write_polygons(tmp_path / "ll.geojson", [box_ll], [2], crs="EPSG:4326")
    with TrainingData(
        [TrainingScene(image_path, geojson)], LabelConfig(THREE), band_indexes=[1]
    ) as data:
        y = data.read(TileRef(0, PixelWindow(0, 0, 40, 60)))[1]
        assert abs(int((y == 1).sum()) - 400) <= 24
    with pytest.raises(TrainingDataError, match=r"no class column 'class'.*landcover"):
        TrainingData([TrainingScene(image_path, gpkg)], LabelConfig(THREE), band_indexes=[1])
    bad = write_polygons(tmp_path / "bad.gpkg", [box], ["swamp"])
    with pytest.raises(TrainingDataError, match=r"class values \['swamp'\]"):
        TrainingData([TrainingScene(image_path, bad)], LabelConfig(THREE), band_indexes=[1])


# ------------------------------------------------------------------- sampling, augmentation


def test_balanced_sampling_draws_rare_classes_more_often(scene) -> None:
    config = LabelConfig(SYNTHETIC_CLASSES)
    with TrainingData(
        [TrainingScene(scene.image_path, scene.labels_path)],
        config,
        band_indexes=[1, 2, 3, 4],
        split=SplitSettings(64, 0.2),
        tile_px=32,
    ) as data:
        rare = int(np.argmin(data.train_counts))

        def share_with_rare(mode: SamplingMode) -> float:
            sampler = data.sampler(mode, np.random.default_rng(0))
            hits = [(data.read(next(sampler))[1] == rare).any() for _ in range(300)]
            return float(np.mean(hits))

        assert share_with_rare(SamplingMode.BALANCED) > 1.3 * share_with_rare(SamplingMode.RANDOM)
        grid = data.sampler(SamplingMode.GRID, np.random.default_rng(0))
        first = [next(grid) for _ in range(len(data._candidates(32)))]
        assert len(set(first)) == len(first)  # one pass visits every grid tile once


def test_augmentation_moves_image_and_labels_together() -> None:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 5, (32, 32)).astype(np.uint8)
    x = np.stack([y.astype(np.float32) + 1, -y.astype(np.float32) - 1])
    flips = Augmentation(scale_jitter=0, brightness=0, contrast=0)
    seen = set()
    for _ in range(40):
        xa, ya = flips.apply(x, y, 32, rng)
        assert (xa[0] == ya + 1).all() and (xa[1] == -ya.astype(np.float32) - 1).all()
        seen.add(ya.tobytes())
    assert len(seen) == 8  # all 8 flips/rotations occur
    # scale jitter: a bigger read is resized back to the tile, labels by nearest neighbour
    big_y = np.kron(y, np.ones((2, 2), dtype=np.uint8))
    big_x = np.kron(x, np.ones((1, 2, 2), dtype=np.float32))
    xa, ya = Augmentation(dihedral=False, scale_jitter=0.2, brightness=0, contrast=0).apply(
        big_x, big_y, 32, rng
    )
    assert ya.shape == (32, 32) and (ya == y).all() and np.allclose(xa[0], y + 1)
    # brightness/contrast change values per band but leave labels alone
    xa, ya = Augmentation(dihedral=False, scale_jitter=0, brightness=0.5, contrast=0.5).apply(
        x, y, 32, rng
    )
    assert (ya == y).all() and not np.allclose(xa, x)


def test_read_class_list_formats(tmp_path: Path) -> None:
    listed = tmp_path / "classes.json"
    listed.write_text(json.dumps([{"id": 1, "name": "Water", "color": "#0000ff"}]))
    assert read_class_list(listed) == (ClassInfo(1, "Water", "#0000ff"),)
    mapping = tmp_path / "classes.yaml"
    mapping.write_text("1: Water\n2: Forest\n")
    classes = read_class_list(mapping)
    assert [c.name for c in classes] == ["Water", "Forest"]
    assert all(c.color.startswith("#") for c in classes)
    broken = tmp_path / "broken.json"
    broken.write_text("[{")
    with pytest.raises(ConfigError, match="cannot read the class list"):
        read_class_list(broken)
