"""The per-pixel choice of a mosaic among the scenes covering each pixel (pure numpy)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from geoseg.classes import CLASS_NODATA

SOURCE_NODATA = 65535
"""``source.tif`` value where no scene has a valid pixel (nodata)."""


@dataclass
class BandChoice:
    """The choice so far over one row band; scenes are offered one at a time, so memory is a
    few band-sized arrays whatever the number of scenes (mutable on purpose)."""

    key: np.ndarray
    """int32 per pixel: the winner's rank x 256 + confidence; -1 where no valid pixel yet."""
    classes: np.ndarray
    confidence: np.ndarray
    source: np.ndarray

    @classmethod
    def empty(cls, shape: tuple[int, int]) -> BandChoice:
        """No scene offered yet: class 255, confidence 0, source `SOURCE_NODATA`."""
        return cls(
            np.full(shape, -1, dtype=np.int32),
            np.full(shape, CLASS_NODATA, dtype=np.uint8),
            np.zeros(shape, dtype=np.uint8),
            np.full(shape, SOURCE_NODATA, dtype=np.uint16),
        )

    def offer(
        self,
        classes: np.ndarray,
        confidence: np.ndarray,
        index: int,
        *,
        rank: int | None = None,
        cols: tuple[int, int] | None = None,
    ) -> None:
        """Take scene ``index``'s pixels (over band columns ``cols``, default all) where they
        beat the choice so far: valid (class != 255) over invalid, then the higher key. The
        comparison is strict, so of equal keys the scene offered first keeps the pixel."""
        c0, c1 = cols if cols is not None else (0, self.key.shape[1])
        key = confidence.astype(np.int32)
        if rank is not None:
            key += rank * 256
        key[classes == CLASS_NODATA] = -1
        best = self.key[:, c0:c1]  # views: the assignments below write into the band
        better = key > best
        best[better] = key[better]
        self.classes[:, c0:c1][better] = classes[better]
        self.confidence[:, c0:c1][better] = confidence[better]
        self.source[:, c0:c1][better] = index


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
    choice = BandChoice.empty(classes.shape[1:])
    for i, index in enumerate(np.asarray(indexes).tolist()):
        scene_rank = None if rank is None else int(rank[i])
        choice.offer(classes[i], confidence[i], index, rank=scene_rank)
    return choice.classes, choice.confidence, choice.source
