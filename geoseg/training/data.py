"""Training data: image GeoTIFFs with label rasters or label polygons, as checked tiles.

Labels come as a raster on the image grid or as polygons (GeoPackage/GeoJSON/... with a class
column) rasterized on the fly per tile. A `LabelConfig` maps label values to classes and says
which values are nodata, so nothing about a data set is hard-coded. Tiles hold class *indices*
(positions in the class list) and `IGNORE` (255) where there is no label.

Each scene may be restricted to a pixel window (its region, e.g. the western 60 % of columns).
The region is cut into square blocks and a seeded share of the blocks is held out for
validation: a spatial split, so validation pixels are never neighbours of training pixels in
the same block. Training reads never see validation labels (they are set to `IGNORE`), though a
training tile may show validation image pixels as context at its border. Normalization
statistics and class counts are streamed block by block over the training blocks only.

Training tiles are drawn at random positions, on a shuffled grid, or class-balanced (tiles
holding rare classes drawn more often), and get a joint augmentation (the 8 flips/rotations,
small scale jitter, per-band brightness/contrast); validation tiles are read as they are.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

import numpy as np
import rasterio

from geoseg.errors import ConfigError, TrainingDataError
from geoseg.geo.grid import BlockGrid, stride_starts
from geoseg.geo.window import PixelWindow, format_window, parse_window
from geoseg.io.raster import SceneInfo, open_scene, read_window
from geoseg.models.package import Normalization
from geoseg.training.augment import Augmentation
from geoseg.training.labels import IGNORE, LabelConfig, LabelReader, open_labels


class SamplingMode(StrEnum):
    """How training tiles are drawn."""

    RANDOM = "random"
    GRID = "grid"
    BALANCED = "balanced"


@dataclass(frozen=True)
class TrainingScene:
    """An image GeoTIFF, its labels (raster or polygons) and the pixel window to use."""

    image: Path
    labels: Path
    window: str | None = None


@dataclass(frozen=True)
class SplitSettings:
    """Spatial train/validation split: blocks of ``block_px``, a share held out (seeded)."""

    block_px: int = 256
    val_fraction: float = 0.2
    seed: int = 0


@dataclass(frozen=True)
class TileRef:
    """A tile to read: scene index, read window and (validation) the block that is scored."""

    scene: int
    window: PixelWindow
    scored: PixelWindow | None = None


@dataclass
class _Scene:
    spec: TrainingScene
    info: SceneInfo
    region: PixelWindow
    labels: LabelReader
    image: rasterio.io.DatasetReader
    train_blocks: list[PixelWindow]
    val_blocks: list[PixelWindow]
    train_px: int = 0


def split_blocks(
    region: PixelWindow, settings: SplitSettings, salt: int = 0
) -> tuple[list[PixelWindow], list[PixelWindow]]:
    """(training blocks, validation blocks): a seeded share ``val_fraction`` of the blocks.

    With more than one block at least one is held out; a single block is all training.
    """
    all_blocks = BlockGrid.covering(region, settings.block_px).windows()
    n_val = round(settings.val_fraction * len(all_blocks))
    if settings.val_fraction > 0 and len(all_blocks) > 1:
        n_val = min(max(1, n_val), len(all_blocks) - 1)
    else:
        n_val = 0
    order = np.random.default_rng([settings.seed, salt]).permutation(len(all_blocks))
    held = set(order[:n_val].tolist())
    train = [b for i, b in enumerate(all_blocks) if i not in held]
    val = [b for i, b in enumerate(all_blocks) if i in held]
    return train, val


class TrainingData:
    """Opened, checked training scenes: statistics, tile sampling and tile reads.

    Use as a context manager (it holds open raster handles). Construction streams once over
    every scene's region block by block: it checks every label value, counts training and
    validation pixels per class, and accumulates the band statistics of the training blocks.
    """

    def __init__(
        self,
        scenes: Sequence[TrainingScene],
        labels: LabelConfig,
        *,
        band_indexes: Sequence[int],
        split: SplitSettings = SplitSettings(),
        tile_px: int = 256,
    ):
        if not scenes:
            raise ConfigError("no training scenes: give at least one --image/--labels pair")
        self.label_config = labels
        self.classes = labels.classes
        self.band_indexes = list(band_indexes)
        self.tile_px = tile_px
        self.split = split
        self._scenes: list[_Scene] = []
        self._balanced: tuple[list[TileRef], np.ndarray] | None = None
        try:
            for i, spec in enumerate(scenes):
                self._scenes.append(self._open(i, spec))
            self._stream_statistics()
        except BaseException:
            self.close()
            raise

    def _open(self, i: int, spec: TrainingScene) -> _Scene:
        info = open_scene(spec.image)
        needed = max(self.band_indexes)
        if info.band_count < needed:
            raise TrainingDataError(
                f"{spec.image}: has {info.band_count} band(s), the training config reads band "
                f"{needed}; give images with those bands or fewer band names"
            )
        region = parse_window(spec.window, info.grid.shape)
        if min(region.shape) < 16:
            raise TrainingDataError(
                f"{spec.image}: the training window {format_window(region)} is smaller than "
                "16 px; widen --window"
            )
        reader = open_labels(Path(spec.labels), self.label_config, info)
        train, val = split_blocks(region, self.split, salt=i)
        return _Scene(spec, info, region, reader, rasterio.open(spec.image), train, val)

    def _stream_statistics(self) -> None:
        n_classes = len(self.classes)
        self.train_counts = np.zeros(n_classes, dtype=np.int64)
        self.val_counts = np.zeros(n_classes, dtype=np.int64)
        n_bands = len(self.band_indexes)
        total, total_sq, count = np.zeros(n_bands), np.zeros(n_bands), 0
        for scene in self._scenes:
            for is_val, group in ((False, scene.train_blocks), (True, scene.val_blocks)):
                for block in group:
                    labels = scene.labels.read(block)
                    data, valid = read_window(scene.image, block, self.band_indexes)
                    labelled = labels[valid & (labels != IGNORE)]
                    counts = np.bincount(labelled, minlength=n_classes)[:n_classes]
                    if is_val:
                        self.val_counts += counts
                        continue
                    self.train_counts += counts
                    scene.train_px += int(labelled.size)
                    pixels = data[:, valid].astype(np.float64)
                    total += pixels.sum(axis=1)
                    total_sq += (pixels**2).sum(axis=1)
                    count += pixels.shape[1]
        if count == 0 or self.train_counts.sum() == 0:
            raise TrainingDataError(
                f"{self._scenes[0].spec.labels}: the training blocks hold no labelled pixel with "
                "valid image data; check the label values, label_nodata and --window"
            )
        mean = total / count
        std = np.sqrt(np.maximum(total_sq / count - mean**2, 1e-12))
        self.normalization = Normalization(mean=mean.tolist(), std=std.tolist())
        self._mean = mean.astype(np.float32)[:, None, None]
        self._std = std.astype(np.float32)[:, None, None]

    def __enter__(self) -> TrainingData:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        for scene in self._scenes:
            scene.image.close()
            scene.labels.close()

    # ------------------------------------------------------------------ reads

    @property
    def scenes(self) -> list[TrainingScene]:
        return [s.spec for s in self._scenes]

    def scene_info(self, i: int) -> SceneInfo:
        return self._scenes[i].info

    def region(self, i: int) -> PixelWindow:
        return self._scenes[i].region

    def read(self, ref: TileRef, *, size_px: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Normalized image (bands, t, t) float32 and class indices (t, t) uint8 for a tile.

        The window is clipped to the scene's region and padded back (invalid, ``IGNORE``).
        Training reads (``ref.scored`` None) hide validation labels; validation reads keep
        only the labels of the scored block.
        """
        scene = self._scenes[ref.scene]
        size_h = size_px or ref.window.height
        size_w = size_px or ref.window.width
        x = np.zeros((len(self.band_indexes), size_h, size_w), dtype=np.float32)
        y = np.full((size_h, size_w), IGNORE, dtype=np.uint8)
        part = ref.window.intersection(scene.region)
        if part is None:
            return x, y
        data, valid = read_window(scene.image, part, self.band_indexes)
        labels = scene.labels.read(part)
        labels[~valid] = IGNORE
        if ref.scored is None:
            for block in scene.val_blocks:
                hidden = block.intersection(part)
                if hidden is not None:
                    labels[hidden.relative_to(part)] = IGNORE
        else:
            keep = np.zeros(labels.shape, dtype=bool)
            scored = ref.scored.intersection(part)
            if scored is not None:
                keep[scored.relative_to(part)] = True
            labels[~keep] = IGNORE
        rows, cols = part.relative_to(ref.window)
        x[:, rows, cols] = (data.astype(np.float32) - self._mean) / self._std * valid
        y[rows, cols] = labels
        return x, y

    def read_training_tile(
        self, ref: TileRef, augmentation: Augmentation | None, rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray]:
        """A training tile of ``tile_px``: read (with scale jitter) and augmented."""
        if augmentation is None:
            return self.read(ref)
        size = augmentation.read_size(self.tile_px, rng)
        region = self._scenes[ref.scene].region
        centre_r = ref.window.row_off + ref.window.height // 2
        centre_c = ref.window.col_off + ref.window.width // 2
        window = _clamped(centre_r - size // 2, centre_c - size // 2, size, region)
        x, y = self.read(TileRef(ref.scene, window), size_px=size)
        return augmentation.apply(x, y, self.tile_px, rng)

    # ------------------------------------------------------------------ sampling

    def validation_tiles(self) -> list[TileRef]:
        """Tiles of ``tile_px`` that score every validation pixel exactly once.

        Each validation block is cut into chunks of at most ``tile_px``; a tile centred on each
        chunk (clamped to the region) gives the chunk context, and only the chunk is scored.
        """
        refs = []
        t = self.tile_px
        for i, scene in enumerate(self._scenes):
            for block in scene.val_blocks:
                for chunk in BlockGrid.covering(block, t).windows():
                    r = chunk.row_off + chunk.height // 2 - t // 2
                    c = chunk.col_off + chunk.width // 2 - t // 2
                    refs.append(TileRef(i, _clamped(r, c, t, scene.region), chunk))
        return refs

    def sampler(self, mode: SamplingMode, rng: np.random.Generator) -> Iterator[TileRef]:
        """An endless stream of training tiles drawn with ``rng``."""
        if mode == SamplingMode.RANDOM:
            return self._random_tiles(rng)
        if mode == SamplingMode.GRID:
            return self._grid_tiles(self.candidates(self.tile_px), rng)
        if self._balanced is None:
            candidates = self.candidates(max(1, self.tile_px // 2))
            self._balanced = (candidates, self.tile_weights(candidates))
        return self._balanced_tiles(*self._balanced, rng)

    def _in_training_block(self, scene: _Scene, row: int, col: int) -> bool:
        return not any(
            b.row_off <= row < b.row_end and b.col_off <= col < b.col_end for b in scene.val_blocks
        )

    def _random_tiles(self, rng: np.random.Generator) -> Iterator[TileRef]:
        weights = np.array([s.train_px for s in self._scenes], dtype=np.float64)
        weights /= weights.sum()
        t = self.tile_px
        while True:
            i = int(rng.choice(len(self._scenes), p=weights))
            scene = self._scenes[i]
            reg = scene.region
            for _ in range(50):
                r = int(rng.integers(reg.row_off, max(reg.row_off, reg.row_end - t) + 1))
                c = int(rng.integers(reg.col_off, max(reg.col_off, reg.col_end - t) + 1))
                window = _clamped(r, c, t, reg)
                centre = (window.row_off + window.height // 2, window.col_off + window.width // 2)
                if self._in_training_block(scene, *centre):
                    break
            yield TileRef(i, window)

    def candidates(self, stride_px: int) -> list[TileRef]:
        """Tiles on a grid of ``stride_px`` over each region whose centre is a training pixel."""
        refs = []
        t = self.tile_px
        for i, scene in enumerate(self._scenes):
            reg = scene.region
            for r in stride_starts(reg.row_off, reg.row_end, t, stride_px):
                for c in stride_starts(reg.col_off, reg.col_end, t, stride_px):
                    window = _clamped(r, c, t, reg)
                    centre_r = window.row_off + window.height // 2
                    centre_c = window.col_off + window.width // 2
                    if self._in_training_block(scene, centre_r, centre_c):
                        refs.append(TileRef(i, window))
        if not refs:
            raise TrainingDataError(
                f"{self._scenes[0].spec.image}: no training tile fits outside the validation "
                "blocks; use a smaller --val-fraction or --tile-size"
            )
        return refs

    def _grid_tiles(self, candidates: list[TileRef], rng: np.random.Generator) -> Iterator[TileRef]:
        while True:
            for k in rng.permutation(len(candidates)):
                yield candidates[int(k)]

    def tile_weights(self, candidates: Sequence[TileRef], power: float = 0.5) -> np.ndarray:
        """Sampling weight per tile: ``max over its classes of (1 / frequency)^power``.

        Frequencies are those of the training labels; a tile holding a class at 1 % of the
        pixels is drawn 10x as often as one holding only a class at 100 %.
        """
        freq = self.train_counts / max(1, self.train_counts.sum())
        rarity = np.where(freq > 0, 1.0 / np.maximum(freq, 1e-12), 0.0) ** power
        weights = np.zeros(len(candidates))
        n = len(self.classes)
        for k, ref in enumerate(candidates):
            _, y = self.read(ref)
            present = np.bincount(y[y != IGNORE], minlength=n)[:n] > 0
            weights[k] = rarity[present].max() if present.any() else 0.0
        return weights

    def _balanced_tiles(
        self, candidates: list[TileRef], weights: np.ndarray, rng: np.random.Generator
    ) -> Iterator[TileRef]:
        if weights.sum() == 0:
            weights = np.ones(len(candidates))
        p = weights / weights.sum()
        jitter = self.tile_px // 4
        while True:
            ref = candidates[int(rng.choice(len(candidates), p=p))]
            reg = self._scenes[ref.scene].region
            dr, dc = (int(v) for v in rng.integers(-jitter, jitter + 1, 2))
            yield TileRef(
                ref.scene,
                _clamped(ref.window.row_off + dr, ref.window.col_off + dc, self.tile_px, reg),
            )

    # ------------------------------------------------------------------ summary

    def summary(self) -> dict[str, Any]:
        """What the model was trained on, for the package's training record."""
        names = [c.name for c in self.classes]
        total = max(1, int(self.train_counts.sum()))
        return {
            "scenes": [
                {
                    "image": str(s.spec.image),
                    "labels": str(s.spec.labels),
                    "window": format_window(s.region),
                    "train_blocks": len(s.train_blocks),
                    "val_blocks": len(s.val_blocks),
                }
                for s in self._scenes
            ],
            "split": {
                "block_px": self.split.block_px,
                "val_fraction": self.split.val_fraction,
                "seed": self.split.seed,
            },
            "train_pixels": dict(zip(names, self.train_counts.tolist(), strict=True)),
            "val_pixels": dict(zip(names, self.val_counts.tolist(), strict=True)),
            "train_fraction": {
                n: round(int(c) / total, 6) for n, c in zip(names, self.train_counts, strict=True)
            },
            "labels": self.label_config.to_json(),
        }


def _clamped(row: int, col: int, size_px: int, region: PixelWindow) -> PixelWindow:
    """A ``size_px`` square at (row, col) shifted inside ``region`` (at its origin if larger)."""
    r = max(region.row_off, min(row, region.row_end - size_px))
    c = max(region.col_off, min(col, region.col_end - size_px))
    return PixelWindow(r, c, size_px, size_px)
