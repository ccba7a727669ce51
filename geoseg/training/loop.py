"""Training: tiles from `geoseg.data` -> a model from the registry -> a model package.

`TrainSettings` holds every option of `geoseg train`; a YAML file uses the same names (dashes
or underscores), and options given on the command line override the file. The loop is small
and plain PyTorch: Adam, ReduceLROnPlateau on the validation loss, mixed precision on CUDA
(bf16 where supported, else fp16 with a gradient scaler), early stopping, and a checkpoint
after every epoch (safetensors + JSON, no pickle) that ``resume`` continues from exactly: the
model, optimizer, scheduler and random states are all restored. The package written at the end
holds the weights of the best validation epoch with classes, colours, bands, normalization,
GSD, tile defaults, the training data summary and the validation metrics.
"""

from __future__ import annotations

import copy
import json
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from geoseg.classes import ClassInfo
from geoseg.errors import ConfigError, TrainingDataError
from geoseg.inference.device import resolve_device
from geoseg.io.raster import open_scene
from geoseg.models.package import (
    Architecture,
    BandSpec,
    ClassSpec,
    PackageMetadata,
    TileDefaults,
    save_package,
)
from geoseg.models.registry import build_model, count_parameters, required_multiple
from geoseg.training.augment import Augmentation
from geoseg.training.data import SplitSettings, TileRef, TrainingData
from geoseg.training.labels import IGNORE
from geoseg.training.losses import (
    build_loss,
    class_weights,
    needs_class_weights,
)
from geoseg.training.metrics import confusion_matrix, scores
from geoseg.training.settings import Monitor, TrainSettings, label_config, resolve_classes

# ---------------------------------------------------------------------------------------------
# Progress.


@dataclass(frozen=True)
class EpochReport:
    """What one epoch did; also the rows of the package's training history."""

    epoch: int
    train_loss: float
    val_loss: float
    val_miou: float
    val_overall_accuracy: float
    lr: float
    seconds: float
    best: bool


class TrainProgress(Protocol):
    """Receives training events (the CLI draws rich progress bars from them)."""

    def started(self, first_epoch: int, epochs: int, steps_per_epoch: int) -> None: ...

    def step(self, epoch: int, step: int, loss: float) -> None: ...

    def epoch_done(self, report: EpochReport) -> None: ...


class NoTrainProgress:
    """Progress sink that ignores everything (library default)."""

    def started(self, first_epoch: int, epochs: int, steps_per_epoch: int) -> None:
        pass

    def step(self, epoch: int, step: int, loss: float) -> None:
        pass

    def epoch_done(self, report: EpochReport) -> None:
        pass


@dataclass(frozen=True)
class TrainResult:
    """The package written and how training went."""

    package: Path
    history: list[EpochReport]
    best_epoch: int
    stopped_early: bool
    seconds: float


# ---------------------------------------------------------------------------------------------
# Training.


class _Amp:
    """Autocast + gradient scaling on CUDA (bf16 if supported, else fp16); a no-op on CPU."""

    def __init__(self, device: torch.device):
        self.enabled = device.type == "cuda"
        self.dtype = (
            torch.bfloat16 if self.enabled and torch.cuda.is_bf16_supported() else torch.float16
        )
        self.scaler = torch.amp.GradScaler(
            "cuda", enabled=self.enabled and self.dtype == torch.float16
        )
        self.device_type = device.type

    def autocast(self) -> torch.autocast:
        return torch.autocast(self.device_type, dtype=self.dtype, enabled=self.enabled)


def train(settings: TrainSettings, progress: TrainProgress | None = None) -> TrainResult:
    """Train the model described by ``settings`` and write its package; see the module doc."""
    t0, cpu0 = time.perf_counter(), time.process_time()
    progress = progress or NoTrainProgress()
    if settings.threads:
        torch.set_num_threads(settings.threads)
    device = resolve_device(settings.device)
    classes = resolve_classes(settings)
    scenes = settings.scenes()
    first = open_scene(scenes[0].image)
    bands = settings.bands or list(range(1, first.band_count + 1))
    band_names = settings.band_names or _band_names(scenes[0].image, bands)
    if len(band_names) != len(bands):
        raise ConfigError(f"--band-names gives {len(band_names)} names for {len(bands)} bands")
    for spec in scenes[1:]:
        other = open_scene(spec.image)
        if other.dtypes[0] != first.dtypes[0] or other.band_count < max(bands):
            raise TrainingDataError(
                f"{spec.image}: {other.band_count} bands of {other.dtypes[0]}, but "
                f"{first.path} has {first.band_count} of {first.dtypes[0]}; "
                "train on scenes of the same sensor product"
            )
    torch.manual_seed(settings.seed)
    rng = np.random.default_rng(settings.seed)
    n_classes = len(classes)
    args = settings.architecture_args(len(bands), n_classes)
    model = build_model(settings.arch, args).to(device)
    multiple = required_multiple(model)
    if settings.tile_size % multiple:
        lower = max(multiple, settings.tile_size // multiple * multiple)
        raise ConfigError(
            f"--tile-size {settings.tile_size}: {settings.arch} needs a multiple of {multiple} "
            f"px; use {lower} or {lower + multiple}"
        )
    split = SplitSettings(settings.val_block, settings.val_fraction, settings.seed)
    augmentation = (
        Augmentation(True, settings.scale_jitter, settings.brightness, settings.contrast)
        if settings.augment
        else None
    )
    labels = label_config(settings, classes)
    with TrainingData(
        scenes, labels, band_indexes=bands, split=split, tile_px=settings.tile_size
    ) as data:
        if data.val_counts.sum() == 0:
            raise TrainingDataError(
                f"{scenes[0].labels}: the validation blocks hold no labelled pixel; "
                "use a smaller --val-block or a larger --val-fraction"
            )
        weights = None
        if needs_class_weights(settings.loss):
            weights = class_weights(
                data.train_counts,
                settings.class_weighting,
                power=settings.weight_power,
                max_weight=settings.max_class_weight,
            ).tolist()
        loss_fn = build_loss(
            settings.loss,
            n_classes=n_classes,
            weights=weights,
            focal_gamma=settings.focal_gamma,
            focal_alpha=settings.focal_alpha,
        ).to(device)
        optimizer = torch.optim.Adam(
            model.parameters(), lr=settings.lr, weight_decay=settings.weight_decay
        )
        scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimizer, mode="min", factor=settings.lr_factor, patience=settings.lr_patience
        )
        loop = _Loop(
            settings,
            model=model,
            optimizer=optimizer,
            scheduler=scheduler,
            loss_fn=loss_fn,
            data=data,
            device=device,
            rng=rng,
        )
        fingerprint = _fingerprint(settings, args, classes, bands)
        if settings.resume:
            loop.restore(settings.checkpoint_path, fingerprint)
        progress.started(loop.epoch + 1, settings.epochs, settings.steps_per_epoch)
        val_tiles = data.validation_tiles()
        while loop.epoch < settings.epochs and not loop.stopped:
            loop.run_epoch(augmentation, val_tiles, progress)
            loop.save(settings.checkpoint_path, fingerprint)
        if loop.best_state is not None:
            model.load_state_dict(loop.best_state)
        summary = data.summary()
        metadata = PackageMetadata(
            name=settings.name,
            description=f"{settings.arch} trained by geoseg train on {len(scenes)} scene(s)",
            architecture=Architecture(name=settings.arch, args=args),
            classes=[ClassSpec(id=c.id, name=c.name, color=c.color) for c in classes],
            bands=[BandSpec(name=n, index=i) for n, i in zip(band_names, bands, strict=True)],
            dtype=first.dtypes[bands[0] - 1],
            normalization=data.normalization,
            gsd_m=first.grid.gsd_m,
            tile=TileDefaults(
                size_px=settings.tile_size,
                overlap_px=settings.tile_size // 4,
                batch_size=settings.batch_size,
            ),
            training={
                **summary,
                "settings": json.loads(settings.model_dump_json()),
                "loss": settings.loss,
                "class_weights": weights,
                "optimizer": f"Adam lr={settings.lr} + ReduceLROnPlateau(val loss)",
                "parameters": count_parameters(model),
                "epochs_run": loop.epoch,
                "best_epoch": loop.best_epoch,
                "stopped_early": loop.stopped,
                "history": [asdict(r) for r in loop.history],
                "seconds": round(time.perf_counter() - t0, 1),
                "cpu_seconds": round(time.process_time() - cpu0, 1),
            },
            metrics=loop.best_metrics,
        )
    path = save_package(settings.out, model.cpu(), metadata)
    return TrainResult(
        path, list(loop.history), loop.best_epoch, loop.stopped, time.perf_counter() - t0
    )


def _band_names(image: Path, bands: Sequence[int]) -> list[str]:
    import rasterio

    with rasterio.open(image) as ds:
        return [ds.descriptions[i - 1] or f"band{i}" for i in bands]


def _fingerprint(
    settings: TrainSettings, args: dict[str, Any], classes: Sequence[ClassInfo], bands: list[int]
) -> dict[str, Any]:
    """What a checkpoint must share with the settings to be resumed."""
    return {
        "arch": settings.arch,
        "args": args,
        "classes": [asdict(c) for c in classes],
        "bands": bands,
        "image": [str(p) for p in settings.image],
        "labels": [str(p) for p in settings.labels],
        "window": settings.window,
        "loss": settings.loss,
        "tile_size": settings.tile_size,
        "val_block": settings.val_block,
        "val_fraction": settings.val_fraction,
        "seed": settings.seed,
    }


class _Loop:
    """Mutable training state: one epoch at a time, checkpointed after each."""

    def __init__(
        self,
        settings: TrainSettings,
        *,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        scheduler: torch.optim.lr_scheduler.ReduceLROnPlateau,
        loss_fn: nn.Module,
        data: TrainingData,
        device: torch.device,
        rng: np.random.Generator,
    ):
        self.settings = settings
        self.model = model
        self.optimizer = optimizer
        self.scheduler = scheduler
        self.loss_fn = loss_fn
        self.data = data
        self.device = device
        self.rng = rng
        self.amp = _Amp(device)
        self.epoch = 0
        self.history: list[EpochReport] = []
        self.best_score = float("inf")
        self.best_epoch = 0
        self.best_state: dict[str, torch.Tensor] | None = None
        self.best_metrics: dict[str, Any] = {}
        self.stale_epochs = 0
        self.stopped = False

    def run_epoch(
        self, augmentation: Augmentation | None, val_tiles: list[TileRef], progress: TrainProgress
    ) -> None:
        t0 = time.perf_counter()
        self.epoch += 1
        s = self.settings
        self.model.train()
        sampler = self.data.sampler(s.sampling, self.rng)
        losses = []
        for step in range(1, s.steps_per_epoch + 1):
            xs, ys = [], []
            for _ in range(s.batch_size):
                x, y = self.data.read_training_tile(next(sampler), augmentation, self.rng)
                xs.append(x)
                ys.append(y)
            xb = torch.from_numpy(np.stack(xs)).to(self.device)
            yb = torch.from_numpy(np.stack(ys)).long().to(self.device)
            self.optimizer.zero_grad(set_to_none=True)
            with self.amp.autocast():
                logits = self.model(xb)
            loss = self.loss_fn(logits.float(), yb)
            self.amp.scaler.scale(loss).backward()
            self.amp.scaler.step(self.optimizer)
            self.amp.scaler.update()
            losses.append(float(loss.item()))
            progress.step(self.epoch, step, losses[-1])
        val_loss, matrix = self.validate(val_tiles)
        self.scheduler.step(val_loss)
        val = scores(matrix)
        score = val_loss if s.monitor == Monitor.LOSS else -val.miou
        improved = score < self.best_score
        if improved:
            self.best_score, self.best_epoch, self.stale_epochs = score, self.epoch, 0
            self.best_state = copy.deepcopy(
                {k: v.detach().cpu() for k, v in self.model.state_dict().items()}
            )
            self.best_metrics = validation_metrics(val, self.data.classes, val_loss)
        else:
            self.stale_epochs += 1
        if s.early_stopping and self.stale_epochs >= s.early_stopping:
            self.stopped = True
        report = EpochReport(
            epoch=self.epoch,
            train_loss=float(np.mean(losses)),
            val_loss=val_loss,
            val_miou=val.miou,
            val_overall_accuracy=val.overall_accuracy,
            lr=float(self.optimizer.param_groups[0]["lr"]),
            seconds=time.perf_counter() - t0,
            best=improved,
        )
        self.history.append(report)
        progress.epoch_done(report)

    def validate(self, tiles: list[TileRef]) -> tuple[float, np.ndarray]:
        """Mean loss and confusion matrix over the validation blocks (no augmentation)."""
        n = len(self.data.classes)
        matrix = np.zeros((n, n), dtype=np.int64)
        total, weight = 0.0, 0
        self.model.eval()
        with torch.inference_mode():
            for k in range(0, len(tiles), self.settings.batch_size):
                batch = [self.data.read(t) for t in tiles[k : k + self.settings.batch_size]]
                xb = torch.from_numpy(np.stack([x for x, _ in batch])).to(self.device)
                yb = torch.from_numpy(np.stack([y for _, y in batch])).long().to(self.device)
                with self.amp.autocast():
                    logits = self.model(xb)
                valid = int((yb != IGNORE).sum())
                if valid:
                    total += float(self.loss_fn(logits.float(), yb)) * valid
                    weight += valid
                pred = logits.argmax(1).cpu().numpy()
                ref = yb.cpu().numpy()
                matrix += confusion_matrix(ref, pred, n, ignore=ref == IGNORE)
        return (total / weight if weight else float("nan")), matrix

    # ------------------------------------------------------------------ checkpoints

    def save(self, path: Path, fingerprint: dict[str, Any]) -> None:
        """Model, best weights, optimizer, scheduler, random states and history (atomic)."""
        tensors: dict[str, torch.Tensor] = {}
        for k, v in self.model.state_dict().items():
            tensors[f"model.{k}"] = v.detach().cpu().clone()
        for k, v in (self.best_state or {}).items():
            tensors[f"best.{k}"] = v.clone()
        opt = self.optimizer.state_dict()
        for pid, state in opt["state"].items():
            for key, value in state.items():
                tensors[f"optim.{pid}.{key}"] = torch.as_tensor(value).detach().cpu().clone()
        tensors["rng.torch"] = torch.get_rng_state()
        meta = {
            "fingerprint": fingerprint,
            "epoch": self.epoch,
            "history": [asdict(r) for r in self.history],
            "best_score": self.best_score,
            "best_epoch": self.best_epoch,
            "best_metrics": self.best_metrics,
            "stale_epochs": self.stale_epochs,
            "stopped": self.stopped,
            "optimizer_groups": opt["param_groups"],
            "scheduler": self.scheduler.state_dict(),
            "rng_numpy": self.rng.bit_generator.state,
            "grad_scaler": self.amp.scaler.state_dict(),
        }
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.partial-{os.getpid()}")
        try:
            save_file(tensors, str(tmp), metadata={"geoseg_checkpoint": json.dumps(meta)})
            tmp.replace(path)
        finally:
            tmp.unlink(missing_ok=True)

    def restore(self, path: Path, fingerprint: dict[str, Any]) -> None:
        """Continue from a checkpoint written by `save` for the same settings."""
        if not path.exists():
            raise ConfigError(
                f"{path}: no checkpoint to resume from; train without --resume first "
                "(or point --checkpoint-dir at the folder holding last.safetensors)"
            )
        try:
            from safetensors import safe_open

            with safe_open(str(path), "pt") as f:
                meta = json.loads((f.metadata() or {})["geoseg_checkpoint"])
            tensors = load_file(str(path))
        except (SafetensorError, KeyError, ValueError, OSError) as exc:
            raise ConfigError(f"{path}: not a geoseg checkpoint ({exc}); delete it") from None
        if meta["fingerprint"] != json.loads(json.dumps(fingerprint)):
            changed = sorted(
                k for k in fingerprint if meta["fingerprint"].get(k) != _jsonable(fingerprint[k])
            )
            raise ConfigError(
                f"{path}: the checkpoint was written with different {', '.join(changed)}; "
                "resume with the same settings, or drop --resume to start over"
            )
        self.model.load_state_dict(_prefixed(tensors, "model."))
        best = _prefixed(tensors, "best.")
        self.best_state = best or None
        state: dict[int, dict[str, torch.Tensor]] = {}
        for key, value in _prefixed(tensors, "optim.").items():
            pid, name = key.split(".", 1)
            state.setdefault(int(pid), {})[name] = value.to(self.device)
        self.optimizer.load_state_dict({"state": state, "param_groups": meta["optimizer_groups"]})
        self.scheduler.load_state_dict(meta["scheduler"])
        if meta["grad_scaler"]:
            self.amp.scaler.load_state_dict(meta["grad_scaler"])
        torch.set_rng_state(tensors["rng.torch"])
        self.rng.bit_generator.state = meta["rng_numpy"]
        self.epoch = int(meta["epoch"])
        self.history = [EpochReport(**r) for r in meta["history"]]
        self.best_score = float(meta["best_score"])
        self.best_epoch = int(meta["best_epoch"])
        self.best_metrics = meta["best_metrics"]
        self.stale_epochs = int(meta["stale_epochs"])
        self.stopped = bool(meta["stopped"])


def _prefixed(tensors: Mapping[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value))


def validation_metrics(val: Any, classes: Sequence[ClassInfo], val_loss: float) -> dict[str, Any]:
    """The package's metrics block: overall and per-class validation scores of one epoch.

    Classes with neither reference nor predicted pixels (NaN scores) are left out.
    """

    def per_class(values: np.ndarray) -> dict[str, float]:
        return {
            c.name: round(float(v), 6)
            for c, v in zip(classes, values, strict=True)
            if not np.isnan(v)
        }

    return {
        "validation_loss": val_loss,
        "validation_miou": val.miou,
        "validation_overall_accuracy": val.overall_accuracy,
        "validation_macro_f1": val.macro_f1,
        "validation_iou": per_class(val.iou),
        "validation_f1": per_class(val.f1),
        "validation_support": {c.name: int(n) for c, n in zip(classes, val.support, strict=True)},
    }
