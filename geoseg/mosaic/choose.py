"""The per-pixel choice of a mosaic among the scenes covering each pixel (pure numpy)."""

from __future__ import annotations

import numpy as np

from geoseg.classes import CLASS_NODATA

SOURCE_NODATA = 65535
"""``source.tif`` value where no scene has a valid pixel (nodata)."""


def choose_pixels(
    classes: np.ndarray,
    confidence: np.ndarray,
    indexes: np.ndarray,
    rank: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Class, confidence and source index per pixel from (scenes, rows, cols) stacks.

    A valid pixel (class != 255: inside the scene and the AOI, not cloud-masked) always wins
    over an invalid one. Among valid ones the highest ``confidence`` wins, or with ``rank``
    (one integer per scene, larger = newer) the newest, confidence breaking ties between
    scenes of one date; remaining ties go to the first scene. ``indexes`` are the scenes'
    numbers in the run's source table, written where they win; pixels no scene covers are
    class 255, confidence 0, source `SOURCE_NODATA`.
    """
    valid = classes != CLASS_NODATA
    key = confidence.astype(np.int64)
    if rank is not None:
        key = key + np.asarray(rank, dtype=np.int64)[:, None, None] * 256
    key = np.where(valid, key, -1)
    best = np.argmax(key, axis=0)[None]
    covered = valid.any(axis=0)
    chosen = np.take_along_axis(classes, best, axis=0)[0]
    chosen_confidence = np.take_along_axis(confidence, best, axis=0)[0]
    source = np.asarray(indexes, dtype=np.uint16)[best[0]]
    return (
        np.where(covered, chosen, CLASS_NODATA).astype(np.uint8),
        np.where(covered, chosen_confidence, 0).astype(np.uint8),
        np.where(covered, source, SOURCE_NODATA).astype(np.uint16),
    )
