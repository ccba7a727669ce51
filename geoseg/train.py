"""Basic training: random tiles from image/label GeoTIFF pairs -> segmentation model -> package.

Image and label rasters must share one grid. The bottom ``val_fraction`` of each scene's rows
is held out as a spatial validation block (no pixel of it is ever trained on), tiled on a grid
for validation. Normalization statistics are streamed over the training blocks and stored in
the package with the classes, bands, GSD, tile defaults, data summary and validation metrics.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
import torch
from torch import nn

from geoseg.classes import CLASS_NODATA, ClassInfo
from geoseg.errors import TrainingDataError
from geoseg.grid import PixelWindow
from geoseg.io.raster import open_scene, read_window
from geoseg.metrics import confusion_matrix, scores
from geoseg.models.registry import build_model, count_parameters, required_multiple
from geoseg.package import (
    Architecture,
    BandSpec,
    ClassSpec,
    Normalization,
    PackageMetadata,
    TileDefaults,
    save_package,
)
from geoseg.predict import normalize, resolve_device


@dataclass(frozen=True)
class TrainingPair:
    """An image GeoTIFF and its label raster on the same grid."""

    image: Path
    labels: Path


@dataclass(frozen=True)
class TrainConfig:
    """Options of `geoseg train` (basic version)."""

    arch: str = "smp-unet"
    arch_args: dict[str, Any] = field(default_factory=dict)
    band_names: tuple[str, ...] = ("blue", "green", "red", "nir")
    tile_px: int = 256
    batch_size: int = 8
    epochs: int = 10
    steps_per_epoch: int = 50
    lr: float = 1e-3
    val_fraction: float = 0.2
    seed: int = 0
    device: str = "auto"
    name: str = "geoseg-model"


@dataclass(frozen=True)
class EpochReport:
    epoch: int
    train_loss: float
    val_miou: float
    seconds: float


@dataclass(frozen=True)
class _Source:
    pair: TrainingPair
    height: int
    width: int
    train_rows: int  # rows [0, train_rows) train, the rest validate


def check_pairs(pairs: Sequence[TrainingPair], classes: Sequence[ClassInfo]) -> list[_Source]:
    """Refuse pairs whose grids differ or whose labels hold values not in the class list."""
    sources = []
    known = {c.id for c in classes} | {CLASS_NODATA}
    for pair in pairs:
        img, lab = open_scene(pair.image), open_scene(pair.labels)
        if (img.crs, img.transform, img.shape) != (lab.crs, lab.transform, lab.shape):
            raise TrainingDataError(
                f"{pair.labels}: the label grid (CRS, transform, size) differs from "
                f"{pair.image}; resample the labels onto the image grid (gdalwarp -te -tr)"
            )
        values = _label_values(pair.labels)
        unknown = sorted(set(values) - known)
        if unknown:
            raise TrainingDataError(
                f"{pair.labels}: label values {unknown} are not in the class list "
                f"{sorted(known - {CLASS_NODATA})}; add them to --classes or set them to 255"
            )
        sources.append(_Source(pair, img.height, img.width, 0))
    return sources


def _label_values(path: Path) -> set[int]:
    values: set[int] = set()
    with rasterio.open(path) as ds:
        for _, window in ds.block_windows(1):
            values.update(np.unique(ds.read(1, window=window)).tolist())
    return values


def band_statistics(
    images: Sequence[tuple[Path, int]], n_bands: int
) -> tuple[list[float], list[float]]:
    """Per-band mean and std over valid pixels of the first ``rows`` rows of each image."""
    total = np.zeros(n_bands)
    total_sq = np.zeros(n_bands)
    count = 0
    for path, rows in images:
        with rasterio.open(path) as ds:
            for r0 in range(0, rows, 512):
                window = PixelWindow(r0, 0, min(512, rows - r0), ds.width)
                data, valid = read_window(ds, window, range(1, n_bands + 1))
                pixels = data[:, valid].astype(np.float64)
                total += pixels.sum(axis=1)
                total_sq += (pixels**2).sum(axis=1)
                count += pixels.shape[1]
    if count == 0:
        raise TrainingDataError("the training images have no valid pixels")
    mean = total / count
    std = np.sqrt(np.maximum(total_sq / count - mean**2, 1e-12))
    return mean.tolist(), std.tolist()


def augment(
    x: np.ndarray, y: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """One of the 8 flips/rotations, applied identically to image (C,H,W) and mask (H,W)."""
    k = int(rng.integers(4))
    x, y = np.rot90(x, k, axes=(1, 2)), np.rot90(y, k)
    if rng.integers(2):
        x, y = x[:, :, ::-1], y[:, ::-1]
    return np.ascontiguousarray(x), np.ascontiguousarray(y)


class TileReader:
    """Reads normalized image tiles and class-index label tiles from the training pairs."""

    def __init__(
        self, sources: Sequence[_Source], classes: Sequence[ClassInfo], norm: Normalization
    ):
        self.sources = sources
        self._mean = np.asarray(norm.mean, dtype=np.float32)[:, None, None]
        self._std = np.asarray(norm.std, dtype=np.float32)[:, None, None]
        self._lut = np.full(256, CLASS_NODATA, dtype=np.int64)
        for index, c in enumerate(classes):
            self._lut[c.id] = index
        self._images = [rasterio.open(s.pair.image) for s in sources]
        self._labels = [rasterio.open(s.pair.labels) for s in sources]
        self._n_bands = len(norm.mean)

    def read(self, source: int, window: PixelWindow) -> tuple[np.ndarray, np.ndarray]:
        data, valid = read_window(self._images[source], window, range(1, self._n_bands + 1))
        x = normalize(data.astype(np.float32), valid, self._mean, self._std)
        labels = self._labels[source].read(1, window=window.to_rasterio())
        y = self._lut[labels]
        y[~valid] = CLASS_NODATA
        return x, y

    def close(self) -> None:
        for ds in (*self._images, *self._labels):
            ds.close()


def random_window(source: _Source, tile_px: int, rng: np.random.Generator) -> PixelWindow:
    """A random tile inside the training rows of a source."""
    r = int(rng.integers(0, source.train_rows - tile_px + 1))
    c = int(rng.integers(0, source.width - tile_px + 1))
    return PixelWindow(r, c, tile_px, tile_px)


def validation_windows(source: _Source, tile_px: int, multiple: int = 32) -> list[PixelWindow]:
    """Tiles covering the validation rows (edge tiles shifted inward).

    Tiles shrink to the largest multiple of ``multiple`` that fits a short validation block.
    """
    tile_px = min(tile_px, (source.height - source.train_rows) // multiple * multiple)
    r_starts = _starts(source.train_rows, source.height, tile_px)
    c_starts = _starts(0, source.width, tile_px)
    return [PixelWindow(r, c, tile_px, tile_px) for r in r_starts for c in c_starts]


def _starts(begin: int, end: int, tile_px: int) -> list[int]:
    n = math.ceil((end - begin) / tile_px)
    return sorted({min(begin + k * tile_px, end - tile_px) for k in range(n)})


def train(
    pairs: Sequence[TrainingPair],
    classes: Sequence[ClassInfo],
    config: TrainConfig,
    out: Path,
    on_epoch: Callable[[EpochReport], None] | None = None,
) -> Path:
    """Train a model on ``pairs`` and save it as a package at ``out``; returns ``out``."""
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    device = resolve_device(config.device)
    sources = [
        _Source(s.pair, s.height, s.width, int(s.height * (1 - config.val_fraction)))
        for s in check_pairs(pairs, classes)
    ]
    for s in sources:
        if (
            s.train_rows < config.tile_px
            or s.height - s.train_rows < 64
            or s.width < config.tile_px
        ):
            raise TrainingDataError(
                f"{s.pair.image}: {s.height}x{s.width} px is too small for {config.tile_px} px "
                "training tiles plus a validation block of >= 64 rows; use a smaller --tile-size"
            )
    first = open_scene(pairs[0].image)
    n_bands = len(config.band_names)
    if first.band_count < n_bands:
        raise TrainingDataError(
            f"{first.path}: has {first.band_count} bands, --bands names {n_bands}"
        )
    mean, std = band_statistics([(s.pair.image, s.train_rows) for s in sources], n_bands)
    norm = Normalization(mean=mean, std=std)
    args = {"in_channels": n_bands, "classes": len(classes), **config.arch_args}
    model = build_model(config.arch, args).to(device)
    if config.tile_px % required_multiple(model):
        raise TrainingDataError(
            f"--tile-size {config.tile_px} must be a multiple of {required_multiple(model)}"
        )
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(
        optimizer, T_max=config.epochs * config.steps_per_epoch
    )
    loss_fn = nn.CrossEntropyLoss(ignore_index=CLASS_NODATA)
    reader = TileReader(sources, classes, norm)
    history = []
    try:
        for epoch in range(1, config.epochs + 1):
            t0 = time.perf_counter()
            model.train()
            losses = []
            for _ in range(config.steps_per_epoch):
                xs, ys = [], []
                for _ in range(config.batch_size):
                    i = int(rng.integers(len(sources)))
                    x, y = reader.read(i, random_window(sources[i], config.tile_px, rng))
                    x, y = augment(x, y, rng)
                    xs.append(x)
                    ys.append(y)
                xb = torch.from_numpy(np.stack(xs)).to(device)
                yb = torch.from_numpy(np.stack(ys)).to(device)
                optimizer.zero_grad(set_to_none=True)
                loss = loss_fn(model(xb), yb)
                loss.backward()
                optimizer.step()
                scheduler.step()
                losses.append(loss.item())
            matrix = evaluate_validation(
                model, reader, sources, n_classes=len(classes), config=config, device=device
            )
            report = EpochReport(
                epoch, float(np.mean(losses)), scores(matrix).miou, time.perf_counter() - t0
            )
            history.append(report)
            if on_epoch is not None:
                on_epoch(report)
    finally:
        reader.close()
    final = scores(matrix)
    metadata = PackageMetadata(
        name=config.name,
        description=f"{config.arch} trained by geoseg train on {len(pairs)} scene(s)",
        architecture=Architecture(name=config.arch, args=args),
        classes=[ClassSpec(id=c.id, name=c.name, color=c.color) for c in classes],
        bands=[BandSpec(name=n, index=i + 1) for i, n in enumerate(config.band_names)],
        dtype=first.dtypes[0],
        normalization=norm,
        gsd_m=first.gsd_m,
        tile=TileDefaults(size_px=config.tile_px, overlap_px=config.tile_px // 8, batch_size=8),
        training={
            "images": [str(p.image) for p in pairs],
            "labels": [str(p.labels) for p in pairs],
            "validation": f"bottom {config.val_fraction:.0%} of rows of each scene",
            "epochs": config.epochs,
            "steps_per_epoch": config.steps_per_epoch,
            "batch_size": config.batch_size,
            "tile_px": config.tile_px,
            "optimizer": f"Adam lr={config.lr} cosine",
            "loss": "cross-entropy",
            "parameters": count_parameters(model),
            "history": [r.__dict__ for r in history],
        },
        metrics={
            "validation_miou": final.miou,
            "validation_overall_accuracy": final.overall_accuracy,
            "validation_iou": {c.name: float(v) for c, v in zip(classes, final.iou, strict=True)},
        },
    )
    return save_package(out, model.cpu(), metadata)


def evaluate_validation(
    model: nn.Module,
    reader: TileReader,
    sources: Sequence[_Source],
    *,
    n_classes: int,
    config: TrainConfig,
    device: torch.device,
) -> np.ndarray:
    """Confusion matrix of the model over every validation tile of every source."""
    model.eval()
    matrix = np.zeros((n_classes, n_classes), dtype=np.int64)
    with torch.inference_mode():
        for i, source in enumerate(sources):
            for window in validation_windows(source, config.tile_px, required_multiple(model)):
                x, y = reader.read(i, window)
                logits = model(torch.from_numpy(x[None]).to(device))
                pred = logits.argmax(1)[0].cpu().numpy()
                matrix += confusion_matrix(y, pred, n_classes, ignore=y == CLASS_NODATA)
    return matrix
