"""Training data: windows, spatial split, statistics, hidden validation labels, sampling."""

from __future__ import annotations

import numpy as np
import pytest

from geoseg.errors import ConfigError
from geoseg.geo.grid import BlockGrid, stride_starts
from geoseg.geo.window import PixelWindow, format_window, parse_window
from geoseg.synthetic import SYNTHETIC_CLASSES, write_synthetic_scene
from geoseg.training.data import (
    SamplingMode,
    SplitSettings,
    TileRef,
    TrainingData,
    TrainingScene,
    split_blocks,
)
from geoseg.training.labels import IGNORE, LabelConfig
from tests.support.training import THREE


@pytest.fixture(scope="module")
def scene(tmp_path_factory: pytest.TempPathFactory):
    return write_synthetic_scene(tmp_path_factory.mktemp("data"), size_px=192, seed=5)


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


# ---------------------------------------------------------------------------- statistics, reads


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


# ---------------------------------------------------------------------------------- sampling


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
        first = [next(grid) for _ in range(len(data.candidates(32)))]
        assert len(set(first)) == len(first)  # one pass visits every grid tile once
