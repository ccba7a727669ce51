"""`TrainSettings`: every option of `geoseg train`, from a YAML config and/or the command line.

Values come as YAML gives them (lists, mappings) or as the command line writes them
(``11=1,12=1`` for ``label_map``, ``1,2,3,4`` for ``bands``); `load_train_settings` merges the
two and turns a validation error into a `ConfigError` that names the option.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from enum import StrEnum
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from pydantic_core import PydanticCustomError

from geoseg.classes import ClassInfo
from geoseg.errors import ConfigError, option
from geoseg.inference.precision import Precision
from geoseg.io.outputs import classes_from_tags
from geoseg.training.data import SamplingMode, TrainingScene
from geoseg.training.labels import IGNORE, LabelConfig, read_class_list
from geoseg.training.losses import ClassWeighting, parse_loss

CHECKPOINT_NAME = "last.safetensors"

_OPTION_TEXT = "option_text"
"""Error type of an unreadable command-line text; its message follows the option's name."""


class LrSchedule(StrEnum):
    """How the learning rate changes over the epochs."""

    PLATEAU = "plateau"
    """Multiply by ``lr_factor`` after ``lr_patience`` epochs without a val-loss gain."""
    COSINE = "cosine"
    """Half a cosine from ``lr`` at epoch 1 down to 0 after ``epochs`` (fixed length)."""


class Monitor(StrEnum):
    """Validation quantity that picks the best epoch and drives early stopping."""

    LOSS = "loss"
    MIOU = "miou"


class InputValues(StrEnum):
    """What the training images' values mean, recorded in the package (its radiometry)."""

    AUTO = "auto"
    DISPLAY = "display"
    NONE = "none"


class ClassEntry(BaseModel):
    """A class in a training config: raster value ``id``, ``name``, optional ``color``."""

    id: int
    name: str
    color: str | None = None


class TrainSettings(BaseModel):
    """Every option of `geoseg train`; a YAML config file uses the same names."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    image: list[Path] = Field(min_length=1, description="image GeoTIFFs, one per scene")
    labels: list[Path] = Field(
        min_length=1, description="label raster on the image grid or polygons, one per image"
    )
    out: Path = Field(description="model package to write (.geoseg)")
    window: list[str] = Field(
        default_factory=list,
        description="pixel window per scene (one for all), e.g. cols=0:677; default: all",
    )
    classes: Path | list[ClassEntry] | dict[int, str] | None = Field(
        None, description="class list (file or inline); default: the labels' GEOSEG_CLASSES tag"
    )
    label_map: dict[int, int] = Field(
        default_factory=dict, description="label value -> class id (default: identity)"
    )
    label_nodata: list[int] | None = Field(
        None, description="label values without a label (default: the raster's nodata and 255)"
    )
    class_column: str = Field("class", description="class column of label polygons")
    bands: list[int] | None = Field(None, description="1-based image bands (default: all)")
    band_names: list[str] | None = Field(None, description="band names (default: descriptions)")
    arch: str = Field("smp-unet", description="architecture name in the model registry")
    encoder: str | None = Field(None, description="smp/timm encoder (smp-* and fcn*)")
    width: float | None = Field(None, gt=0, description="width multiplier (unet, fcn*)")
    decoder_channels: list[int] | None = Field(None, description="decoder channels (smp-unet)")
    arch_args: dict[str, Any] = Field(default_factory=dict, description="more model arguments")
    loss: str = Field(
        "ce", description="ce, weighted-ce, focal, dice, lovasz or a sum like ce+dice"
    )
    class_weighting: ClassWeighting = Field(ClassWeighting.MEDIAN, description="weighted-ce")
    weight_power: float = Field(1.0, gt=0, description="class weights ** power (0.5: sqrt)")
    max_class_weight: float | None = Field(None, gt=0, description="clip class weights")
    focal_gamma: float = Field(2.0, ge=0, description="focal loss gamma")
    focal_alpha: list[float] | None = Field(None, description="focal loss per-class alpha")
    epochs: int = Field(30, ge=1, description="maximum number of epochs")
    steps_per_epoch: int = Field(50, ge=1, description="training batches per epoch")
    batch_size: int = Field(8, ge=1, description="tiles per batch")
    tile_size: int = Field(256, ge=16, description="training tile size in px")
    lr: float = Field(1e-4, gt=0, description="Adam learning rate")
    weight_decay: float = Field(0.0, ge=0, description="Adam weight decay")
    ema_decay: float = Field(
        0.0,
        ge=0,
        lt=1,
        description="validate and package a moving average of the weights with this decay "
        "per step (0.99: over ~100 steps); 0: the weights as trained",
    )
    lr_schedule: LrSchedule = Field(
        LrSchedule.PLATEAU,
        description="plateau (lr_factor after lr_patience stale epochs) or cosine (to 0 over "
        "the epochs)",
    )
    lr_patience: int = Field(3, ge=0, description="epochs without val-loss gain before lr/2")
    lr_factor: float = Field(0.5, gt=0, lt=1, description="ReduceLROnPlateau factor")
    early_stopping: int = Field(8, ge=0, description="stop after N epochs without gain; 0: off")
    monitor: Monitor = Field(Monitor.LOSS, description="val loss or val mIoU picks the best")
    sampling: SamplingMode = Field(SamplingMode.RANDOM, description="random, grid, balanced")
    val_fraction: float = Field(0.2, gt=0, lt=1, description="share of blocks held out")
    val_block: int = Field(256, ge=16, description="block size of the spatial split in px")
    augment: bool = Field(True, description="flips/rotations, scale and brightness jitter")
    scale_jitter: float = Field(0.1, ge=0, lt=0.5, description="relative scale jitter")
    brightness: float = Field(0.1, ge=0, description="per-band brightness jitter (std units)")
    contrast: float = Field(0.1, ge=0, lt=1, description="per-band contrast jitter")
    elastic_px: float = Field(
        0.0, ge=0, le=64, description="elastic warp: std of coarse-grid displacements, px"
    )
    blur_px: float = Field(
        0.0, ge=0, le=16, description="blur half the tiles: Gaussian std up to this, px"
    )
    haze: float = Field(
        0.0, ge=0, lt=1, description="haze half the tiles: blend with bright grey up to this"
    )
    radiometry: InputValues = Field(
        InputValues.AUTO,
        description="what the image values mean: auto (declared scale/offset; uint8 without "
        "one: 8-bit display values), display, or none (unknown)",
    )
    encoder_weights: Path | None = Field(
        None, description="encoder weights file to start from (safetensors, .geoseg, state_dict)"
    )
    init_weights: Path | None = Field(
        None,
        description="whole model to fine-tune (.geoseg, safetensors, state_dict): same "
        "architecture, bands and classes",
    )
    refit: Path | None = Field(
        None,
        description="a validated run's package: train the same settings on every block for its "
        "best epoch count at its learning rates (nothing held out)",
    )
    seed: int = Field(0, description="random seed (split, sampling, initialization)")
    device: str = Field("auto", description="auto, cpu or cuda")
    precision: Precision = Field(
        Precision.AUTO,
        description="auto (bf16 on CUDA and on CPUs with AMX, else fp32), fp32, bf16 or fp16",
    )
    name: str = Field("geoseg-model", description="model name stored in the package")
    checkpoint_dir: Path | None = Field(None, description="default: <out>.ckpt/")
    resume: bool = Field(False, description="continue from the checkpoint's last epoch")
    threads: int | None = Field(None, ge=1, description="CPU threads for torch")

    @field_validator("loss")
    @classmethod
    def _known_loss(cls, value: str) -> str:
        try:
            parse_loss(value)
        except ConfigError as exc:
            raise ValueError(str(exc).split(": ", 1)[-1]) from None
        return value

    @field_validator("window", mode="before")
    @classmethod
    def _one_window(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    @field_validator("label_map", mode="before")
    @classmethod
    def _label_map_text(cls, value: Any) -> Any:
        """``11=1,12=1,21=2`` (label value = class id) as a mapping."""
        if not isinstance(value, str):
            return value
        try:
            return {int(k): int(v) for k, v in (p.split("=") for p in value.split(",") if p)}
        except ValueError:
            raise _text_error(value, "write e.g. 11=1,12=1") from None

    @field_validator("bands", "decoder_channels", mode="before")
    @classmethod
    def _integers_text(cls, value: Any) -> Any:
        """``1,2,3,4`` as a list of integers."""
        return _numbers(value, int) if isinstance(value, str) else value

    @field_validator("focal_alpha", mode="before")
    @classmethod
    def _floats_text(cls, value: Any) -> Any:
        """``0.25,0.75`` as a list of numbers."""
        return _numbers(value, float) if isinstance(value, str) else value

    @field_validator("band_names", mode="before")
    @classmethod
    def _names_text(cls, value: Any) -> Any:
        """``blue,green,red,nir`` as a list of names."""
        if not isinstance(value, str):
            return value
        return value.split(",") if value else None

    @property
    def checkpoint_path(self) -> Path:
        folder = self.checkpoint_dir or self.out.with_name(self.out.name + ".ckpt")
        return folder / CHECKPOINT_NAME

    def scenes(self) -> list[TrainingScene]:
        if len(self.image) != len(self.labels):
            raise ConfigError(
                f"{option('image')} given {len(self.image)} times but {option('labels')} "
                f"{len(self.labels)} times; "
                "give one labels file per image"
            )
        if len(self.window) not in (0, 1, len(self.image)):
            raise ConfigError(
                f"{option('window')} given {len(self.window)} times for {len(self.image)} images; "
                "give one for all images or one per image"
            )
        windows = self.window * len(self.image) if len(self.window) == 1 else self.window
        windows = windows or [None] * len(self.image)  # type: ignore[list-item]
        return [
            TrainingScene(i, lab, w)
            for i, lab, w in zip(self.image, self.labels, windows, strict=True)
        ]

    def architecture_args(self, in_channels: int, n_classes: int) -> dict[str, Any]:
        """Registry arguments of the model from the generic options."""
        args: dict[str, Any] = {"in_channels": in_channels, "classes": n_classes}
        smp = self.arch.startswith("smp-")
        if self.encoder is not None:
            if not smp and not self.arch.startswith("fcn"):
                raise ConfigError(
                    f"{option('encoder')} applies to smp-* and fcn* models, not {self.arch}"
                )
            args["encoder_name" if smp else "encoder"] = self.encoder
        if self.width is not None:
            if smp:
                raise ConfigError(
                    f"{option('width')} applies to unet and fcn* models, not {self.arch}"
                )
            args["width"] = self.width
        if self.decoder_channels:
            if not smp:
                raise ConfigError(
                    f"{option('decoder_channels')} applies to smp-* models, not {self.arch}"
                )
            args["decoder_channels"] = list(self.decoder_channels)
            args["encoder_depth"] = len(self.decoder_channels)
        return {**args, **self.arch_args}


def load_train_settings(
    config: Path | None = None, overrides: Mapping[str, Any] | None = None
) -> TrainSettings:
    """Settings from a YAML file (optional) with ``overrides`` (CLI options) on top.

    ``None`` values in ``overrides`` mean "not given" and leave the file's value. Relative
    paths in the file are relative to the file's folder.
    """
    values: dict[str, Any] = {}
    if config is not None:
        try:
            raw = yaml.safe_load(Path(config).read_text(encoding="utf-8")) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise ConfigError(f"{config}: cannot read the training config ({exc})") from None
        if not isinstance(raw, dict):
            raise ConfigError(f"{config}: the training config must be a mapping of options")
        values = {str(k).replace("-", "_"): v for k, v in raw.items()}
        base = Path(config).parent
        for key in (
            "image",
            "labels",
            "out",
            "classes",
            "checkpoint_dir",
            "encoder_weights",
            "init_weights",
            "refit",
        ):
            if key in values:
                values[key] = _relative_to(values[key], base)
    for key, value in (overrides or {}).items():
        if value is not None and value != []:
            values[key] = value
    try:
        return TrainSettings(**values)
    except ValidationError as exc:
        # an unknown option (a typo) explains the other errors best: report it first
        errors = sorted(exc.errors(), key=lambda e: e["type"] != "extra_forbidden")
        first = errors[0]
        name = option(str(first["loc"][0])) if first["loc"] else "config"
        where = f"{config}: " if config is not None else ""
        message = str(first["msg"]).removeprefix("Value error, ")
        if first["type"] == "extra_forbidden":
            message = "unknown option; see `geoseg train --help` for the option names"
        separator = " " if first["type"] == _OPTION_TEXT else ": "  # --bands '1,x': expected ...
        raise ConfigError(f"{where}{name}{separator}{message}") from None


def _numbers(text: str, kind: type[int] | type[float]) -> list[int] | list[float] | None:
    """Comma-separated numbers; no number at all (``""``) is no value."""
    try:
        numbers = [kind(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise _text_error(text, "expected comma-separated numbers") from None
    return numbers or None


def _text_error(text: str, message: str) -> PydanticCustomError:
    return PydanticCustomError(
        _OPTION_TEXT, "{text}: {message}", {"text": repr(text), "message": message}
    )


def _relative_to(value: Any, base: Path) -> Any:
    if isinstance(value, str) and not Path(value).is_absolute():
        return os.path.normpath(base / value)
    if isinstance(value, list):
        return [_relative_to(v, base) if isinstance(v, str) else v for v in value]
    return value


def resolve_classes(settings: TrainSettings) -> tuple[ClassInfo, ...]:
    """The class list: from the settings (file or inline) or the first label raster's tags."""
    source = settings.classes
    if isinstance(source, Path):
        return read_class_list(source)
    if isinstance(source, dict):
        return read_class_list([{"id": k, "name": v} for k, v in source.items()])
    if source is not None:
        return read_class_list([c.model_dump() for c in source])
    labels = settings.labels[0]
    found = None
    if labels.exists() and labels.suffix.lower() in (".tif", ".tiff", ".vrt"):
        found = classes_from_tags(labels)
    if found is None:
        raise ConfigError(
            f"{labels}: has no GEOSEG_CLASSES tag; give the classes in the training config "
            "or with --classes classes.json"
        )
    return tuple(found)


def label_config(settings: TrainSettings, classes: Sequence[ClassInfo]) -> LabelConfig:
    nodata = frozenset(settings.label_nodata) if settings.label_nodata is not None else None
    return LabelConfig(
        classes=tuple(classes),
        value_map=dict(settings.label_map),
        nodata=nodata if nodata is not None else frozenset({IGNORE}),
        class_column=settings.class_column,
    )
