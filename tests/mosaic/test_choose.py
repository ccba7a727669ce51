"""The per-pixel choice of a mosaic: valid over masked, then confidence or date."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from geoseg.classes import CLASS_NODATA
from geoseg.mosaic import SOURCE_NODATA, choose_pixels
from geoseg.mosaic.choose import BandChoice

ND = CLASS_NODATA


def test_a_valid_pixel_wins_over_a_masked_one_whatever_its_confidence() -> None:
    classes = np.array([[[ND, 1]], [[2, ND]]], np.uint8)
    confidence = np.array([[[0, 30]], [[99, 99]]], np.uint8)  # masked pixels say 0 or anything
    cls, conf, src = choose_pixels(classes, confidence, np.array([4, 7]))
    np.testing.assert_array_equal(cls, [[2, 1]])
    np.testing.assert_array_equal(conf, [[99, 30]])
    np.testing.assert_array_equal(src, [[7, 4]])  # numbers from the run's source table


def test_highest_confidence_then_first_scene_wins() -> None:
    classes = np.array([[[1, 1, 1]], [[2, 2, 2]]], np.uint8)
    confidence = np.array([[[60, 40, 50]], [[50, 70, 50]]], np.uint8)
    cls, _, src = choose_pixels(classes, confidence, np.array([0, 1]))
    np.testing.assert_array_equal(cls, [[1, 2, 1]])
    np.testing.assert_array_equal(src, [[0, 1, 0]])


def test_newest_wins_and_confidence_breaks_ties_of_one_date() -> None:
    classes = np.array([[[1, 1]], [[2, 2]], [[3, ND]]], np.uint8)
    confidence = np.array([[[90, 90]], [[20, 20]], [[30, 0]]], np.uint8)
    _, _, src = choose_pixels(classes, confidence, np.arange(3), rank=np.array([0, 1, 1]))
    np.testing.assert_array_equal(src, [[2, 1]])  # scenes 1, 2 share the newest date


def test_pixels_no_scene_covers_are_nodata() -> None:
    classes = np.full((2, 1, 2), ND, np.uint8)
    cls, conf, src = choose_pixels(classes, np.full((2, 1, 2), 50, np.uint8), np.arange(2))
    assert (cls == ND).all() and (conf == 0).all() and (src == SOURCE_NODATA).all()


@settings(max_examples=60, deadline=None)
@given(
    arrays(np.uint8, (3, 4, 5), elements=st.sampled_from([0, 1, 2, ND])),
    arrays(np.uint8, (3, 4, 5), elements=st.integers(0, 100)),
)
def test_the_choice_is_a_valid_pixel_of_the_named_scene_with_the_top_confidence(
    classes: np.ndarray, confidence: np.ndarray
) -> None:
    cls, conf, src = choose_pixels(classes, confidence, np.arange(3))
    valid = classes != ND
    np.testing.assert_array_equal(cls != ND, valid.any(axis=0))
    rows, cols = np.nonzero(cls != ND)
    chosen = src[rows, cols].astype(int)
    np.testing.assert_array_equal(cls[rows, cols], classes[chosen, rows, cols])
    np.testing.assert_array_equal(conf[rows, cols], confidence[chosen, rows, cols])
    best = np.where(valid, confidence.astype(int), -1).max(axis=0)
    np.testing.assert_array_equal(conf[rows, cols], best[rows, cols])


@settings(max_examples=40, deadline=None)
@given(
    arrays(np.uint8, (3, 4, 9), elements=st.sampled_from([0, 1, ND])),
    arrays(np.uint8, (3, 4, 9), elements=st.integers(0, 100)),
    st.lists(st.tuples(st.integers(0, 9), st.integers(0, 9)), min_size=3, max_size=3),
)
def test_offering_footprint_columns_is_offering_them_over_the_band(
    classes: np.ndarray, confidence: np.ndarray, spans: list[tuple[int, int]]
) -> None:
    """A scene offered over its columns [c0, c1) equals it offered over the whole band with
    255 (not covered) outside them."""
    padded = classes.copy()
    choice = BandChoice.empty((4, 9))
    for i, (a, b) in enumerate(spans):
        c0, c1 = min(a, b), max(a, b)
        padded[i, :, :c0], padded[i, :, c1:] = ND, ND
        part = np.ascontiguousarray(classes[i, :, c0:c1])
        choice.offer(part, confidence[i, :, c0:c1], i, cols=(c0, c1))
    cls, conf, src = choose_pixels(padded, confidence, np.arange(3))
    np.testing.assert_array_equal(choice.classes, cls)
    np.testing.assert_array_equal(choice.source, src)
    np.testing.assert_array_equal(choice.confidence, conf)
