"""Tests for geoseg.synthetic.layers: every class present, plausible and overlapping spectra."""

from __future__ import annotations

import numpy as np

from geoseg.synthetic import (
    BUILT_UP,
    CROPLAND,
    FOREST,
    GRASSLAND,
    SYNTHETIC_CLASSES,
    WATER,
    Landscape,
)


def _ndvi(image: np.ndarray) -> np.ndarray:
    red, nir = image[2].astype(np.float64), image[3].astype(np.float64)
    return (nir - red) / (nir + red)


def test_all_classes_present_with_at_least_one_percent(scene512: Landscape) -> None:
    counts = np.bincount(scene512.labels.ravel(), minlength=256)
    fractions = counts[: len(SYNTHETIC_CLASSES)] / scene512.labels.size
    assert counts[len(SYNTHETIC_CLASSES) :].sum() == 0
    assert (fractions >= 0.01).all(), fractions


def test_spectra_are_plausible(scene512: Landscape) -> None:
    ndvi = _ndvi(scene512.image)
    labels = scene512.labels
    mean = {c.id: float(ndvi[labels == c.id].mean()) for c in SYNTHETIC_CLASSES}
    assert mean[FOREST] > mean[GRASSLAND] > mean[CROPLAND] > max(mean[BUILT_UP], mean[WATER])
    water = scene512.image[:, labels == WATER].astype(np.float64)
    assert water[3].mean() < water[2].mean()
    built = scene512.image[:, labels == BUILT_UP].astype(np.float64).mean(axis=1)
    assert built[:3].mean() > scene512.image[:3].mean()  # built-up is brighter than average


def test_classes_are_not_separable_pixel_by_pixel(scene512: Landscape) -> None:
    """Noise and mixed pixels: each class overlaps another in NDVI, so context must help."""
    ndvi = _ndvi(scene512.image)
    labels = scene512.labels
    lo = {c.id: np.percentile(ndvi[labels == c.id], 1) for c in SYNTHETIC_CLASSES}
    hi = {c.id: np.percentile(ndvi[labels == c.id], 99) for c in SYNTHETIC_CLASSES}
    assert lo[FOREST] < hi[CROPLAND]
    assert lo[CROPLAND] < hi[BUILT_UP]
    assert lo[GRASSLAND] < hi[CROPLAND]
