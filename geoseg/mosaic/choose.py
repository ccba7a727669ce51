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
    # one scene at a time, a strict ">" keeping the first of equal keys: memory is a few
    # (rows, cols) arrays whatever the number of scenes (an argmax over an int64 key stack
    # cost 8 bytes x scenes x pixels)
    shape = classes.shape[1:]
    best_key = np.full(shape, -1, dtype=np.int32)
    out_class = np.full(shape, CLASS_NODATA, dtype=np.uint8)
    out_confidence = np.zeros(shape, dtype=np.uint8)
    out_source = np.full(shape, SOURCE_NODATA, dtype=np.uint16)
    for i, index in enumerate(np.asarray(indexes).tolist()):
        key = confidence[i].astype(np.int32)
        if rank is not None:
            key += int(rank[i]) * 256
        key[classes[i] == CLASS_NODATA] = -1
        better = key > best_key
        best_key[better] = key[better]
        out_class[better] = classes[i][better]
        out_confidence[better] = confidence[i][better]
        out_source[better] = index
    return out_class, out_confidence, out_source
