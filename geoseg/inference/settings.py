"""How a scene is predicted (tiles, batches, threads) and what the prediction did: plain data.

`PredictSettings` (tile size, overlap, batch, blending, reader threads, where to blend) and
`PredictStats` (the figures of run.json). No torch here, not even through the imports
(`geoseg.inference.stitch` is numpy only): `geoseg.config` builds these settings without
importing the models.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from geoseg.geo.grid import check_tile_overlap
from geoseg.inference.stitch import BlendKind

if TYPE_CHECKING:
    import torch

    from geoseg.models.package import ModelPackage


def default_reader_threads() -> int:
    """Tile reader threads when none are asked for: one per CPU core, at least 2, at most 8."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return max(2, min(8, cores))


@dataclass(frozen=True)
class PredictSettings:
    """How to tile and batch a scene; defaults come from the model package."""

    tile_px: int
    overlap_px: int
    batch_size: int
    blend: BlendKind = BlendKind.HANN
    reader_threads: int = field(default_factory=default_reader_threads)
    """Threads reading tiles, one GDAL handle each; default `default_reader_threads`."""
    prefetch_tiles: int | None = None
    """Tiles read ahead of the model; default two batches (memory: tiles x bands x t^2 x 4 B)."""
    skip_empty_tiles: bool = True
    """Do not run the model on tiles without valid input inside the AOI (same outputs)."""
    blend_on_device: bool | None = None
    """Blend and compute class/confidence with torch on the predictor's device, so only uint8
    rows come back to the host; None: on CUDA only (the numpy path is faster on a CPU)."""

    def blends_on_device(self, device: torch.device) -> bool:
        if self.blend_on_device is None:
            return device.type == "cuda"
        return self.blend_on_device


@dataclass
class PredictStats:
    """What one scene's prediction did, for the summary and run.json."""

    tiles: int = 0
    window_px: int = 0
    valid_px: int = 0
    class_px: dict[int, int] = field(default_factory=dict)
    seconds: float = 0.0
    model_seconds: float = 0.0
    skipped_tiles: int = 0
    """Tiles not run through the model: no valid input pixel inside the AOI in their output."""
    masked_px: int = 0
    """Window pixels a cloud/quality mask dropped (nodata in the outputs)."""


def predict_settings_for(
    package: ModelPackage,
    *,
    tile_size: int | None,
    overlap: int | None,
    batch_size: int | None,
    **extra: Any,
) -> PredictSettings:
    """Tile size, overlap and batch size: the given values, else the package's defaults.

    The tile size and overlap are checked here (`check_tile_overlap`), so every caller fails
    on a bad pair before it writes anything. ``extra``: further `PredictSettings` fields.
    """
    tile = package.metadata.tile
    settings = PredictSettings(
        tile_px=tile_size or tile.size_px,
        overlap_px=tile.overlap_px if overlap is None else overlap,
        batch_size=batch_size or tile.batch_size,
        **extra,
    )
    check_tile_overlap(settings.tile_px, settings.overlap_px)
    return settings
