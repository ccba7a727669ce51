"""Training: tiles from `geoseg.training.data` -> a model from the registry -> a model package.

`train` is the recipe: resolve the inputs, build the model, open the training data, build the
loss, run the epochs, write the package. The loop is small and plain PyTorch: Adam,
ReduceLROnPlateau on the validation loss or a fixed-length cosine, mixed precision on CUDA
(bf16 where supported, else fp16 with a gradient scaler), optionally a moving average of the
weights (`geoseg.training.ema`) validated in their place, early stopping, and a checkpoint after
every epoch (`geoseg.training.checkpoint`) that ``resume`` continues from exactly. The package
holds the weights (or their average) of the best validation epoch with classes, colours,
bands, normalization, GSD, tile defaults, the training data summary and the validation metrics.
"""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
import torch
from torch import nn

from geoseg.classes import ClassInfo
from geoseg.errors import ConfigError, TrainingDataError, option
from geoseg.inference.device import resolve_device
from geoseg.inference.heap import keep_large_allocations
from geoseg.inference.precision import Precision, autocast_dtype
from geoseg.io.raster import SceneInfo, open_scene
from geoseg.models.package import (
    DISPLAY_VALUES,
    Architecture,
    BandSpec,
    ClassSpec,
    InputRadiometry,
    PackageMetadata,
    TileDefaults,
    save_package,
)
from geoseg.models.registry import build_model, count_parameters, required_multiple
from geoseg.models.start_weights import WeightsLoad, load_encoder_weights, load_model_weights
from geoseg.training.augment import Augmentation
from geoseg.training.checkpoint import restore_checkpoint, save_checkpoint, settings_fingerprint
from geoseg.training.data import SplitSettings, TileRef, TrainingData, TrainingScene
from geoseg.training.ema import WeightAverage
from geoseg.training.labels import IGNORE
from geoseg.training.losses import build_loss, class_weights, needs_class_weights
from geoseg.training.metrics import Scores, confusion_matrix, scores, validation_metrics
from geoseg.training.progress import EpochReport, NoTrainProgress, TrainProgress
from geoseg.training.refit import RefitPlan, refit_plan
from geoseg.training.settings import (
    InputValues,
    LrSchedule,
    Monitor,
    TrainSettings,
    label_config,
    resolve_classes,
)


@dataclass(frozen=True)
class TrainResult:
    """The package written and how training went."""

    package: Path
    history: list[EpochReport]
    best_epoch: int
    stopped_early: bool
    seconds: float


@dataclass(frozen=True)
class TrainInputs:
    """What the settings resolve to before training: classes, scenes and the bands to read."""

    classes: tuple[ClassInfo, ...]
    scenes: list[TrainingScene]
    first: SceneInfo
    bands: list[int]
    band_names: list[str]


@dataclass(frozen=True)
class _Clock:
    """Wall-clock and CPU time since training started (for the package's record)."""

    wall: float = field(default_factory=time.perf_counter)
    cpu: float = field(default_factory=time.process_time)

    def seconds(self) -> float:
        return time.perf_counter() - self.wall

    def cpu_seconds(self) -> float:
        return time.process_time() - self.cpu


def train(settings: TrainSettings, progress: TrainProgress | None = None) -> TrainResult:
    """Train the model described by ``settings`` and write its package; see the module doc."""
    clock = _Clock()
    progress = progress or NoTrainProgress()
    if settings.threads:
        torch.set_num_threads(settings.threads)
    device = resolve_device(settings.device)
    if device.type == "cpu":
        keep_large_allocations()  # activations reused, not page-faulted in anew each step
    inputs = resolve_inputs(settings)
    plan = refit_plan(settings) if settings.refit else None
    torch.manual_seed(settings.seed)
    rng = np.random.default_rng(settings.seed)
    model, args = build_checked_model(settings, inputs, device)
    start = load_start_weights(model, settings)
    with open_training_data(settings, inputs, hold_out=plan is None) as data:
        loss_fn, weights = build_loss_fn(settings, data, device)
        loop = TrainingLoop(
            settings, model=model, loss_fn=loss_fn, data=data, device=device, rng=rng, refit=plan
        )
        loop.run(settings_fingerprint(settings, args, inputs.classes, inputs.bands), progress)
        metadata = package_metadata(
            settings, inputs, args=args, loop=loop, weights=weights, clock=clock
        )
        if start is not None:
            metadata.training[start[0]] = start[1].to_json()
        if plan is not None:
            metadata.training["refit"] = plan.record()
    path = save_package(settings.out, model.cpu(), metadata)
    return TrainResult(path, list(loop.history), loop.best_epoch, loop.stopped, clock.seconds())


def resolve_inputs(settings: TrainSettings) -> TrainInputs:
    """Classes, scenes and bands; every scene must be of the first one's sensor product."""
    classes = resolve_classes(settings)
    scenes = settings.scenes()
    first = open_scene(scenes[0].image)
    bands = settings.bands or list(range(1, first.band_count + 1))
    band_names = settings.band_names or _band_names(scenes[0].image, bands)
    if len(band_names) != len(bands):
        raise ConfigError(
            f"{option('band_names')} gives {len(band_names)} names for {len(bands)} bands"
        )
    for spec in scenes[1:]:
        other = open_scene(spec.image)
        if other.dtypes[0] != first.dtypes[0] or other.band_count < max(bands):
            raise TrainingDataError(
                f"{spec.image}: {other.band_count} bands of {other.dtypes[0]}, but "
                f"{first.path} has {first.band_count} of {first.dtypes[0]}; "
                "train on scenes of the same sensor product"
            )
    return TrainInputs(classes, scenes, first, bands, band_names)


def _band_names(image: Path, bands: Sequence[int]) -> list[str]:
    import rasterio

    with rasterio.open(image) as ds:
        return [ds.descriptions[i - 1] or f"band{i}" for i in bands]


def build_checked_model(
    settings: TrainSettings, inputs: TrainInputs, device: torch.device
) -> tuple[nn.Module, dict[str, Any]]:
    """The model (initialized from torch's seeded generator) and its registry arguments.

    The training tile size must be a multiple of what the architecture needs.
    """
    args = settings.architecture_args(len(inputs.bands), len(inputs.classes))
    model = build_model(settings.arch, args).to(device).to(memory_format=torch.channels_last)
    multiple = required_multiple(model)
    if settings.tile_size % multiple:
        lower = max(multiple, settings.tile_size // multiple * multiple)
        raise ConfigError(
            f"{option('tile_size')} {settings.tile_size}: {settings.arch} needs a multiple of "
            f"{multiple} px; use {lower} or {lower + multiple}"
        )
    return model, args


def load_start_weights(model: nn.Module, settings: TrainSettings) -> tuple[str, WeightsLoad] | None:
    """Encoder or whole-model weights copied into ``model`` (the setting's name and what was
    loaded), or None to train from the seeded initialization."""
    if settings.encoder_weights is not None and settings.init_weights is not None:
        raise ConfigError(
            f"{option('encoder_weights')} and {option('init_weights')} both given: the whole "
            "model already holds an encoder; give one of them"
        )
    if settings.encoder_weights is not None:
        return "encoder_weights", load_encoder_weights(model, settings.encoder_weights)
    if settings.init_weights is not None:
        return "init_weights", load_model_weights(model, settings.init_weights)
    return None


def open_training_data(
    settings: TrainSettings, inputs: TrainInputs, *, hold_out: bool = True
) -> TrainingData:
    """The opened, checked training data (a context manager); validation must hold labels.
    Without ``hold_out`` (a refit) every block is training data."""
    fraction = settings.val_fraction if hold_out else 0.0
    split = SplitSettings(settings.val_block, fraction, settings.seed)
    labels = label_config(settings, inputs.classes)
    data = TrainingData(
        inputs.scenes, labels, band_indexes=inputs.bands, split=split, tile_px=settings.tile_size
    )
    if hold_out and data.val_counts.sum() == 0:
        data.close()
        raise TrainingDataError(
            f"{inputs.scenes[0].labels}: the validation blocks hold no labelled pixel; "
            "use a smaller --val-block or a larger --val-fraction"
        )
    return data


def build_loss_fn(
    settings: TrainSettings, data: TrainingData, device: torch.device
) -> tuple[nn.Module, list[float] | None]:
    """The loss module and the class weights it uses (from the training pixel counts)."""
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
        n_classes=len(data.classes),
        weights=weights,
        focal_gamma=settings.focal_gamma,
        focal_alpha=settings.focal_alpha,
    ).to(device)
    return loss_fn, weights


def declared_radiometry(
    image: Path, band: int, values: InputValues = InputValues.AUTO
) -> InputRadiometry | None:
    """What the training values mean, recorded in the package so that scenes in other units
    are converted into these: the scene's declared scale/offset (GeoTIFF metadata); 8-bit
    display values for ``display`` or a uint8 scene declaring none; else None (unknown)."""
    if values == InputValues.NONE:
        return None
    display = InputRadiometry(quantity=DISPLAY_VALUES, scale=1.0, offset=0.0)
    if values == InputValues.DISPLAY:
        return display
    with rasterio.open(image) as ds:
        scale, offset = ds.scales[band - 1], ds.offsets[band - 1]
        dtype = ds.dtypes[band - 1]
    if scale == 1.0 and offset == 0.0:
        return display if dtype == "uint8" else None
    return InputRadiometry(scale=scale, offset=offset)


def package_metadata(
    settings: TrainSettings,
    inputs: TrainInputs,
    *,
    args: dict[str, Any],
    loop: TrainingLoop,
    weights: list[float] | None,
    clock: _Clock,
) -> PackageMetadata:
    """Everything the package says about the trained model, its data and its training."""
    bands, first = inputs.bands, inputs.first
    return PackageMetadata(
        name=settings.name,
        description=f"{settings.arch} trained by geoseg train on {len(inputs.scenes)} scene(s)",
        architecture=Architecture(name=settings.arch, args=args),
        classes=[ClassSpec(id=c.id, name=c.name, color=c.color) for c in inputs.classes],
        bands=[BandSpec(name=n, index=i) for n, i in zip(inputs.band_names, bands, strict=True)],
        dtype=first.dtypes[bands[0] - 1],
        normalization=loop.data.normalization,
        radiometry=declared_radiometry(first.path, bands[0], settings.radiometry),
        gsd_m=first.grid.gsd_m,
        tile=TileDefaults(
            size_px=settings.tile_size,
            overlap_px=settings.tile_size // 4,
            batch_size=settings.batch_size,
        ),
        training={
            **loop.data.summary(),
            "settings": json.loads(settings.model_dump_json()),
            "loss": settings.loss,
            "class_weights": weights,
            "optimizer": f"Adam lr={settings.lr} + {schedule_text(settings)}",
            "parameters": count_parameters(loop.model),
            "epochs_run": loop.epoch,
            "best_epoch": loop.best_epoch,
            "stopped_early": loop.stopped,
            "history": [asdict(r) for r in loop.history],
            "seconds": round(clock.seconds(), 1),
            "cpu_seconds": round(clock.cpu_seconds(), 1),
        },
        metrics=loop.best_metrics,
    )


class _Amp:
    """Autocast in the settings' precision (`geoseg.inference.precision`), with gradient
    scaling for fp16 on CUDA; a no-op in fp32."""

    def __init__(self, device: torch.device, precision: Precision):
        dtype = autocast_dtype(device, precision, training=True)
        self.enabled = dtype is not None
        self.dtype = dtype or torch.float32
        self.scaler = torch.amp.GradScaler(
            "cuda", enabled=device.type == "cuda" and self.dtype == torch.float16
        )
        self.device_type = device.type

    def autocast(self) -> torch.autocast:
        return torch.autocast(self.device_type, dtype=self.dtype, enabled=self.enabled)


def build_scheduler(
    optimizer: torch.optim.Optimizer, settings: TrainSettings
) -> torch.optim.lr_scheduler.LRScheduler | torch.optim.lr_scheduler.ReduceLROnPlateau:
    """The learning-rate schedule, stepped once after each epoch.

    Cosine: epoch k (1-based) of E trains at ``lr (1 + cos(pi (k - 1) / E)) / 2``.
    """
    if settings.lr_schedule == LrSchedule.COSINE:
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=settings.epochs)
    return torch.optim.lr_scheduler.ReduceLROnPlateau(
        optimizer, mode="min", factor=settings.lr_factor, patience=settings.lr_patience
    )


def schedule_text(settings: TrainSettings) -> str:
    """The schedule as the package records it."""
    if settings.lr_schedule == LrSchedule.COSINE:
        return f"cosine to 0 over {settings.epochs} epochs"
    return "ReduceLROnPlateau(val loss)"


class TrainingLoop:
    """Mutable training state: one epoch at a time, checkpointed after each.

    Holds the model, its Adam optimizer and lr scheduler (plateau or cosine), the weight average
    if one is kept, the random generator of tile sampling, and what picks the best epoch and
    stops early.
    """

    def __init__(
        self,
        settings: TrainSettings,
        *,
        model: nn.Module,
        loss_fn: nn.Module,
        data: TrainingData,
        device: torch.device,
        rng: np.random.Generator,
        refit: RefitPlan | None = None,
    ):
        self.settings = settings
        self.refit = refit
        self.model = model
        self.optimizer = torch.optim.Adam(
            model.parameters(), lr=settings.lr, weight_decay=settings.weight_decay
        )
        self.scheduler = build_scheduler(self.optimizer, settings)
        self.average = WeightAverage(model, settings.ema_decay) if settings.ema_decay else None
        self.loss_fn = loss_fn
        self.data = data
        self.device = device
        self.rng = rng
        self.amp = _Amp(self.device, settings.precision)
        self.epoch = 0
        self.history: list[EpochReport] = []
        self.best_score = float("inf")
        self.best_epoch = 0
        self.best_state: dict[str, torch.Tensor] | None = None
        self.best_metrics: dict[str, Any] = refit.metrics if refit else {}
        self.stale_epochs = 0
        self.stopped = False

    def run(self, fingerprint: dict[str, Any], progress: TrainProgress) -> None:
        """Epochs until the last or an early stop (after a checkpoint's, with ``resume``);
        then the model holds the best epoch's weights."""
        s = self.settings
        if s.resume:
            restore_checkpoint(self, s.checkpoint_path, fingerprint)
        epochs = self.refit.epochs if self.refit else s.epochs
        progress.started(self.epoch + 1, epochs, s.steps_per_epoch)
        val_tiles = self.data.validation_tiles()
        augmentation = (
            Augmentation(
                True,
                s.scale_jitter,
                s.brightness,
                s.contrast,
                s.elastic_px,
                blur_px=s.blur_px,
                haze=s.haze,
            )
            if s.augment
            else None
        )
        while self.epoch < epochs and not self.stopped:
            if self.refit:
                self.run_refit_epoch(augmentation, progress)
            else:
                self.run_epoch(augmentation, val_tiles, progress)
            save_checkpoint(self, s.checkpoint_path, fingerprint)
        if self.refit:  # nothing validated: the last epoch is the model
            self.best_epoch = self.epoch
            self.best_state = {k: v.detach().cpu() for k, v in self.evaluated.state_dict().items()}
        if self.best_state is not None:
            self.model.load_state_dict(self.best_state)

    def run_epoch(
        self, augmentation: Augmentation | None, val_tiles: list[TileRef], progress: TrainProgress
    ) -> None:
        """Train ``steps_per_epoch`` batches, validate, step the scheduler, keep the best."""
        t0 = time.perf_counter()
        self.epoch += 1
        losses = self.train_steps(augmentation, progress)
        val_loss, matrix = self.validate(val_tiles)
        if isinstance(self.scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
            self.scheduler.step(val_loss)
        else:
            self.scheduler.step()
        val = scores(matrix)
        improved = self._keep_if_best(val_loss, val)
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

    def run_refit_epoch(self, augmentation: Augmentation | None, progress: TrainProgress) -> None:
        """Train one epoch at the learning rate the validated run used in it; no validation."""
        assert self.refit is not None
        t0 = time.perf_counter()
        self.epoch += 1
        lr = self.refit.lrs[self.epoch - 1]
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        losses = self.train_steps(augmentation, progress)
        nan = float("nan")
        report = EpochReport(
            epoch=self.epoch,
            train_loss=float(np.mean(losses)),
            val_loss=nan,
            val_miou=nan,
            val_overall_accuracy=nan,
            lr=float(self.optimizer.param_groups[0]["lr"]),
            seconds=time.perf_counter() - t0,
            best=False,
        )
        self.history.append(report)
        progress.epoch_done(report)

    def train_steps(
        self, augmentation: Augmentation | None, progress: TrainProgress
    ) -> list[float]:
        """One epoch's optimizer steps on sampled, augmented tiles; the loss of each."""
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
            xb = _as_channels_last(torch.from_numpy(np.stack(xs)).to(self.device))
            yb = torch.from_numpy(np.stack(ys)).long().to(self.device)
            self.optimizer.zero_grad(set_to_none=True)
            with self.amp.autocast():
                logits = self.model(xb)
            loss = self.loss_fn(logits.float(), yb)
            self.amp.scaler.scale(loss).backward()
            self.amp.scaler.step(self.optimizer)
            self.amp.scaler.update()
            if self.average is not None:
                self.average.update(self.model)
            losses.append(float(loss.item()))
            progress.step(self.epoch, step, losses[-1])
        return losses

    @property
    def evaluated(self) -> nn.Module:
        """The model that is validated and packaged: the weight average, if one is kept."""
        return self.model if self.average is None else self.average.model

    def _keep_if_best(self, val_loss: float, val: Scores) -> bool:
        """Keep this epoch's weights and metrics if the monitored score improved (early
        stopping counts the epochs that did not); whether it did."""
        s = self.settings
        score = val_loss if s.monitor == Monitor.LOSS else -val.miou
        improved = score < self.best_score
        if improved:
            self.best_score, self.best_epoch, self.stale_epochs = score, self.epoch, 0
            self.best_state = copy.deepcopy(
                {k: v.detach().cpu() for k, v in self.evaluated.state_dict().items()}
            )
            self.best_metrics = validation_metrics(val, self.data.classes, val_loss)
        else:
            self.stale_epochs += 1
        if s.early_stopping and self.stale_epochs >= s.early_stopping:
            self.stopped = True
        return improved

    def validate(self, tiles: list[TileRef]) -> tuple[float, np.ndarray]:
        """Mean loss and confusion matrix over the validation blocks (no augmentation)."""
        n = len(self.data.classes)
        matrix = np.zeros((n, n), dtype=np.int64)
        total, weight = 0.0, 0
        model = self.evaluated.eval()
        with torch.inference_mode():
            for k in range(0, len(tiles), self.settings.batch_size):
                batch = [self.data.read(t) for t in tiles[k : k + self.settings.batch_size]]
                xb = torch.from_numpy(np.stack([x for x, _ in batch])).to(self.device)
                xb = _as_channels_last(xb)
                yb = torch.from_numpy(np.stack([y for _, y in batch])).long().to(self.device)
                with self.amp.autocast():
                    logits = model(xb)
                valid = int((yb != IGNORE).sum())
                if valid:
                    total += float(self.loss_fn(logits.float(), yb)) * valid
                    weight += valid
                pred = logits.argmax(1).cpu().numpy()
                ref = yb.cpu().numpy()
                matrix += confusion_matrix(ref, pred, n, ignore=ref == IGNORE)
        return (total / weight if weight else float("nan")), matrix


def _as_channels_last(batch: torch.Tensor) -> torch.Tensor:
    """The batch in the model's memory layout: channels last, which oneDNN and cuDNN run
    fastest (a CPU training step 1.20 -> 0.95 s in fp32, 0.46 -> 0.42 s in bf16)."""
    return batch.contiguous(memory_format=torch.channels_last)
