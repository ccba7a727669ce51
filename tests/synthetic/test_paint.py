"""Tests for geoseg.synthetic.paint: determinism, windows equal crops, value range, nodata."""

from __future__ import annotations

import numpy as np
import pytest

from geoseg.classes import CLASS_NODATA
from geoseg.errors import ConfigError
from geoseg.synthetic import Landscape, make_landscape, make_spec, render


def test_same_seed_same_scene_different_seed_different_scene() -> None:
    a = make_landscape((96, 128), seed=3)
    b = make_landscape((96, 128), seed=3)
    c = make_landscape((96, 128), seed=4)
    np.testing.assert_array_equal(a.image, b.image)
    np.testing.assert_array_equal(a.labels, b.labels)
    assert not np.array_equal(a.image, c.image)
    assert not np.array_equal(a.labels, c.labels)


@pytest.mark.parametrize("margin_px", [0, 40])
def test_window_equals_crop_of_full_render(margin_px: int) -> None:
    spec = make_spec(300, 420, seed=11, nodata_margin_px=margin_px)
    full_image, full_labels = render(spec, 0, 0, 300, 420)
    windows = [(0, 0, 300, 420), (0, 0, 1, 1), (17, 33, 64, 80), (150, 200, 150, 220)]
    windows += [(299, 0, 1, 420), (0, 419, 300, 1), (123, 7, 31, 257)]
    for row, col, h, w in windows:
        image, labels = render(spec, row, col, h, w)
        np.testing.assert_array_equal(image, full_image[:, row : row + h, col : col + w])
        np.testing.assert_array_equal(labels, full_labels[row : row + h, col : col + w])


def test_tiled_render_reassembles_full_render() -> None:
    spec = make_spec(200, 200, seed=5)
    full_image, full_labels = render(spec, 0, 0, 200, 200)
    image = np.zeros_like(full_image)
    labels = np.zeros_like(full_labels)
    for row in range(0, 200, 37):
        for col in range(0, 200, 53):
            h, w = min(37, 200 - row), min(53, 200 - col)
            image[:, row : row + h, col : col + w], labels[row : row + h, col : col + w] = render(
                spec, row, col, h, w
            )
    np.testing.assert_array_equal(image, full_image)
    np.testing.assert_array_equal(labels, full_labels)


def test_value_range_and_dtypes(scene512: Landscape) -> None:
    assert scene512.image.shape == (4, 512, 512)
    assert scene512.image.dtype == np.uint16
    assert scene512.labels.dtype == np.uint8
    assert scene512.image.min() >= 1  # 0 is nodata
    assert np.percentile(scene512.image, 1) > 60
    assert np.percentile(scene512.image, 99) < 6500
    assert scene512.crs == "EPSG:32633"
    assert scene512.transform.a == 10.0 and scene512.transform.e == -10.0
    assert scene512.transform.c == 500000.0 and scene512.transform.f == 5000000.0 + 5120.0


def test_nodata_margin_is_consistent_between_image_and_labels() -> None:
    for seed in range(4):
        scene = make_landscape((160, 200), seed=seed, nodata_margin_px=30)
        image_nodata = (scene.image == 0).all(axis=0)
        assert ((scene.image == 0).any(axis=0) == image_nodata).all()
        np.testing.assert_array_equal(image_nodata, scene.labels == CLASS_NODATA)
        assert 0.02 < image_nodata.mean() < 0.4
        # The margin hugs an edge: the centre is always valid.
        assert not image_nodata[40:120, 40:160].any()
    assert not (make_landscape(64, seed=0).labels == CLASS_NODATA).any()


def test_window_outside_scene_raises_config_error() -> None:
    spec = make_spec(64, 64, seed=0)
    with pytest.raises(ConfigError):
        render(spec, 32, 32, 64, 16)
    with pytest.raises(ConfigError):
        render(spec, 0, 0, 0, 16)
