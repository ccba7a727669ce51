"""Weights a user already has, loaded into a new model before training: the encoder alone
(``--encoder-weights``, transfer to other classes or decoders) or the whole model
(``--init-weights``, fine-tuning a model of the same architecture, bands and classes).

Accepted files: safetensors, a geoseg package (its weights), or a PyTorch checkpoint read with
``torch.load(weights_only=True)`` (tensors and plain containers only: never a full unpickle).
A checkpoint may wrap its tensors in ``state_dict`` / ``model``; keys may carry a
``module.`` (DataParallel) or ``model.`` prefix. The file may hold the encoder alone (e.g. a
ResNet-34 keyed ``conv1.weight``, ``layer1.0...``) or a whole model (e.g. an earlier geoseg
model of the same architecture, keyed ``encoder.conv1.weight``): the key mapping that matches
the most encoder tensors is taken. Every encoder tensor must be found with its shape, else the
file is refused with one line naming the keys and shapes; keys outside the encoder (a
decoder, a classifier head) are ignored and counted. ``--init-weights`` needs every tensor of
the model, with its shape (other classes or bands: use ``--encoder-weights``).
"""

from __future__ import annotations

import hashlib
import pickle
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from geoseg.errors import ConfigError, ModelPackageError, option

_WRAPPERS = ("state_dict", "model", "model_state_dict", "weights")
_STRIP = ("module.", "model.")
_OPTIONAL = ("num_batches_tracked",)
"""BatchNorm counters some exporters leave out; the model keeps its own."""


@dataclass(frozen=True)
class WeightsLoad:
    """What was loaded: the file, its sha256, tensors loaded and file keys ignored."""

    path: Path
    sha256: str
    loaded: int
    ignored: int
    mapping: str

    def to_json(self) -> dict[str, Any]:
        return {
            "file": str(self.path),
            "sha256": self.sha256,
            "tensors_loaded": self.loaded,
            "file_keys_ignored": self.ignored,
            "key_mapping": self.mapping,
        }


def encoder_prefixes(model: nn.Module) -> tuple[str, ...]:
    """State-dict key prefixes of the model's encoder (smp models, FCN backbones, U-Net)."""
    names = {name for name, _ in model.named_children()}
    if "encoder" in names:
        return ("encoder.",)
    if "backbone" in names:
        return ("backbone.",)
    if {"inc", "down"} <= names:
        return ("inc.", "down.")
    raise ConfigError(
        f"{option('encoder_weights')}: the {type(model).__name__} model has no encoder to load "
        "weights into; use an smp-*, fcn* or unet architecture"
    )


def read_tensors(path: Path, setting: str = "encoder_weights") -> dict[str, torch.Tensor]:
    """The tensors of a safetensors file, a geoseg package or a weights-only torch checkpoint
    (``setting``: the option named when the file is missing)."""
    if not path.is_file() and not path.is_dir():
        raise ConfigError(f"{path}: weights file not found; check {option(setting)}")
    if path.suffix == ".geoseg" or path.is_dir():
        from geoseg.models.package import load_package

        return dict(load_package(path).state_dict)
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except Exception as exc:
            raise ConfigError(f"{path}: cannot read the safetensors file ({exc})") from None
    try:
        found = torch.load(path, map_location="cpu", weights_only=True)
    except (
        RuntimeError,
        pickle.UnpicklingError,
        zipfile.BadZipFile,
        EOFError,
        OSError,
        ValueError,
    ) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConfigError(
            f"{path}: not a weights-only PyTorch checkpoint ({first[:160]}); geoseg never "
            "unpickles code: save the state_dict (torch.save(model.state_dict(), ...)) or "
            "use safetensors"
        ) from None
    return _unwrap(path, found)


def _unwrap(path: Path, found: Any) -> dict[str, torch.Tensor]:
    for _ in range(3):
        if isinstance(found, Mapping):
            inner = next((found[k] for k in _WRAPPERS if isinstance(found.get(k), Mapping)), None)
            if inner is None:
                break
            found = inner
    if not isinstance(found, Mapping):
        raise ConfigError(f"{path}: holds a {type(found).__name__}, not a mapping of tensors")
    tensors = {str(k): v for k, v in found.items() if isinstance(v, torch.Tensor)}
    if not tensors:
        raise ConfigError(f"{path}: holds no tensors; give a state_dict of the model")
    return tensors


def _candidates(keys: list[str], prefixes: tuple[str, ...]) -> dict[str, dict[str, str]]:
    """Named renamings file key -> model key: as stored, stripped of wrappers, and (an encoder
    alone; ``prefixes`` empty: the whole model, no such renaming) with the model's encoder
    prefix added."""
    stripped = {}
    for k in keys:
        s = k
        for p in _STRIP:
            s = s.removeprefix(p)
        stripped[k] = s
    found = {"as stored": {k: k for k in keys}, "wrappers stripped": stripped}
    if len(prefixes) == 1:
        found[f"encoder alone, prefixed {prefixes[0]!r}"] = {
            k: prefixes[0] + s for k, s in stripped.items()
        }
    return found


@dataclass(frozen=True)
class _Part:
    """Which tensors of the model a file must provide, and how refusals name them."""

    prefixes: tuple[str, ...]
    """State-dict key prefixes of the part; empty: the whole model."""
    noun: str
    setting: str
    fix: str

    def wanted(self, key: str) -> bool:
        return not self.prefixes or key.startswith(self.prefixes)


def _encoder_part(model: nn.Module) -> _Part:
    return _Part(
        encoder_prefixes(model),
        "encoder",
        "encoder_weights",
        f"use weights of the same encoder and number of bands ({option('encoder')}, the "
        "image bands)",
    )


def _model_part() -> _Part:
    return _Part(
        (),
        "model",
        "init_weights",
        "use a model of the same architecture, bands and classes, or take its encoder alone "
        f"with {option('encoder_weights')}",
    )


def map_weights(
    path: Path, tensors: Mapping[str, torch.Tensor], model: nn.Module, part: _Part
) -> tuple[dict[str, torch.Tensor], str, int]:
    """Model-keyed tensors of ``part`` from the file, the mapping's name and file keys ignored.

    Refuses (`ConfigError`, one line) a file whose best mapping misses tensors of the part or
    gives them another shape.
    """
    target = {k: v.shape for k, v in model.state_dict().items() if part.wanted(k)}
    required = {k for k in target if not k.endswith(_OPTIONAL)}
    best_name, best, best_hits = "", {}, -1
    for name, renaming in _candidates(list(tensors), part.prefixes).items():
        mapped = {renaming[k]: v for k, v in tensors.items() if renaming[k] in target}
        hits = len(mapped.keys() & required)
        if hits > best_hits:
            best_name, best, best_hits = name, mapped, hits
    wrong = [
        f"{k}: file {tuple(v.shape)} vs model {tuple(target[k])}"
        for k, v in best.items()
        if tuple(v.shape) != tuple(target[k])
    ]
    if wrong:
        raise ConfigError(
            f"{path}: {len(wrong)} {part.noun} tensor(s) have another shape "
            f"({'; '.join(wrong[:3])}{'; ...' if len(wrong) > 3 else ''}); {part.fix}"
        )
    missing = sorted(required - best.keys())
    if missing:
        raise ConfigError(
            f"{path}: {len(missing)} of {len(required)} {part.noun} tensors are not in the "
            f"file (e.g. {', '.join(missing[:3])}); file keys look like "
            f"{', '.join(list(tensors)[:3])}; {part.fix}"
        )
    return best, best_name, len(tensors) - len(best)


def load_encoder_weights(model: nn.Module, path: Path) -> WeightsLoad:
    """Copy the encoder tensors of ``path`` into ``model`` (in place); what was loaded."""
    return _load_part(model, Path(path), _encoder_part(model))


def load_model_weights(model: nn.Module, path: Path) -> WeightsLoad:
    """Copy every tensor of ``path`` into ``model`` (in place), for fine-tuning; what was
    loaded. The file must hold the whole model with the same shapes."""
    return _load_part(model, Path(path), _model_part())


def _load_part(model: nn.Module, path: Path, part: _Part) -> WeightsLoad:
    try:
        tensors = read_tensors(path, part.setting)
    except ModelPackageError as exc:
        raise ConfigError(str(exc)) from None
    mapped, name, ignored = map_weights(path, tensors, model, part)
    with torch.no_grad():
        state = model.state_dict()
        for key, value in mapped.items():
            state[key].copy_(value.to(state[key].dtype))
    digest = hashlib.sha256()
    if path.is_file():
        with path.open("rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                digest.update(chunk)
    return WeightsLoad(path, digest.hexdigest(), len(mapped), ignored, name)
