"""Encoder weights a user already has, loaded into a new model before training.

Accepted files: safetensors, a geoseg package (its weights), or a PyTorch checkpoint read with
``torch.load(weights_only=True)`` (tensors and plain containers only: never a full unpickle).
A checkpoint may wrap its tensors in ``state_dict`` / ``model``; keys may carry a
``module.`` (DataParallel) or ``model.`` prefix. The file may hold the encoder alone (e.g. a
ResNet-34 keyed ``conv1.weight``, ``layer1.0...``) or a whole model (e.g. an earlier geoseg
model of the same architecture, keyed ``encoder.conv1.weight``): the key mapping that matches
the most encoder tensors is taken. Every encoder tensor must be found with its shape, else the
file is refused with one line naming the keys and shapes; keys outside the encoder (a
decoder, a classifier head) are ignored and counted.
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
class EncoderLoad:
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


def read_tensors(path: Path) -> dict[str, torch.Tensor]:
    """The tensors of a safetensors file, a geoseg package or a weights-only torch checkpoint."""
    if not path.is_file() and not path.is_dir():
        raise ConfigError(
            f"{path}: encoder weights file not found; check {option('encoder_weights')}"
        )
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
        raise ConfigError(f"{path}: holds no tensors; give a state_dict of the encoder")
    return tensors


def _candidates(keys: list[str], prefixes: tuple[str, ...]) -> dict[str, dict[str, str]]:
    """Named renamings file key -> model key: as stored, stripped of wrappers, and (an encoder
    alone) with the model's encoder prefix added."""
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


def map_encoder(
    path: Path, tensors: Mapping[str, torch.Tensor], model: nn.Module
) -> tuple[dict[str, torch.Tensor], str, int]:
    """Model-keyed encoder tensors from the file, the mapping's name and file keys ignored.

    Refuses (`ConfigError`, one line) a file whose best mapping misses encoder tensors or gives
    them another shape.
    """
    prefixes = encoder_prefixes(model)
    target = {k: v.shape for k, v in model.state_dict().items() if k.startswith(prefixes)}
    required = {k for k in target if not k.endswith(_OPTIONAL)}
    best_name, best, best_hits = "", {}, -1
    for name, renaming in _candidates(list(tensors), prefixes).items():
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
            f"{path}: {len(wrong)} encoder tensor(s) have another shape ({'; '.join(wrong[:3])}"
            f"{'; ...' if len(wrong) > 3 else ''}); use weights of the same encoder and number "
            f"of bands ({option('encoder')}, the image bands)"
        )
    missing = sorted(required - best.keys())
    if missing:
        raise ConfigError(
            f"{path}: {len(missing)} of {len(required)} encoder tensors are not in the file "
            f"(e.g. {', '.join(missing[:3])}); file keys look like "
            f"{', '.join(list(tensors)[:3])}; use weights of the same encoder ({option('encoder')})"
        )
    return best, best_name, len(tensors) - len(best)


def load_encoder_weights(model: nn.Module, path: Path) -> EncoderLoad:
    """Copy the encoder tensors of ``path`` into ``model`` (in place); what was loaded."""
    path = Path(path)
    try:
        tensors = read_tensors(path)
    except ModelPackageError as exc:
        raise ConfigError(str(exc)) from None
    mapped, name, ignored = map_encoder(path, tensors, model)
    with torch.no_grad():
        state = model.state_dict()
        for key, value in mapped.items():
            state[key].copy_(value.to(state[key].dtype))
    digest = hashlib.sha256()
    if path.is_file():
        with path.open("rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                digest.update(chunk)
    return EncoderLoad(path, digest.hexdigest(), len(mapped), ignored, name)
