"""Training checkpoints: the whole loop state after an epoch, so ``resume`` continues exactly.

One safetensors file (no pickle) holds the model, the best weights so far, the weight average
(if one is kept) and the optimizer state as tensors; its JSON metadata holds the epoch, the
history, the best score, the scheduler, grad-scaler and random states, and a fingerprint of the
settings that must not change between the run that wrote it and the run that resumes it.
Writes are atomic.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from geoseg.classes import ClassInfo
from geoseg.errors import ConfigError
from geoseg.io.staging import written_atomically
from geoseg.training.progress import EpochReport
from geoseg.training.settings import LrSchedule, TrainSettings

if TYPE_CHECKING:
    from geoseg.training.loop import TrainingLoop

META_KEY = "geoseg_checkpoint"


def settings_fingerprint(
    settings: TrainSettings, args: dict[str, Any], classes: Sequence[ClassInfo], bands: list[int]
) -> dict[str, Any]:
    """What a checkpoint must share with the settings to be resumed."""
    return {
        "arch": settings.arch,
        "args": args,
        "classes": [asdict(c) for c in classes],
        "bands": bands,
        "image": _resolved(settings.image),
        "labels": _resolved(settings.labels),
        "window": settings.window,
        "loss": settings.loss,
        "tile_size": settings.tile_size,
        "val_block": settings.val_block,
        "val_fraction": settings.val_fraction,
        "seed": settings.seed,
        "ema_decay": settings.ema_decay,
        "lr_schedule": str(settings.lr_schedule),
        # a cosine's length is part of its shape; a plateau run may be resumed for longer
        "schedule_epochs": settings.epochs if settings.lr_schedule == LrSchedule.COSINE else None,
        "refit": str(Path(settings.refit).resolve()) if settings.refit else None,
    }


def _resolved(paths: Sequence[Path | str]) -> list[str]:
    """Absolute paths, so a run resumed from another folder or with the config given another
    way (``configs/x.yaml`` or ``/repo/configs/x.yaml``) still matches its checkpoint."""
    return [str(Path(p).resolve()) for p in paths]


def save_checkpoint(loop: TrainingLoop, path: Path, fingerprint: dict[str, Any]) -> None:
    """Model, best weights, optimizer, scheduler, random states and history (atomic)."""
    tensors: dict[str, torch.Tensor] = {}
    for k, v in loop.model.state_dict().items():
        tensors[f"model.{k}"] = _packed(v)
    for k, v in (loop.best_state or {}).items():
        tensors[f"best.{k}"] = _packed(v)
    if loop.average is not None:
        for k, v in loop.average.state_dict().items():
            tensors[f"average.{k}"] = _packed(v)
    opt = loop.optimizer.state_dict()
    for pid, state in opt["state"].items():
        for key, value in state.items():
            tensors[f"optim.{pid}.{key}"] = _packed(torch.as_tensor(value))
    tensors["rng.torch"] = torch.get_rng_state()
    meta = {
        "fingerprint": fingerprint,
        "epoch": loop.epoch,
        "history": [asdict(r) for r in loop.history],
        "best_score": loop.best_score,
        "best_epoch": loop.best_epoch,
        "best_metrics": loop.best_metrics,
        "stale_epochs": loop.stale_epochs,
        "stopped": loop.stopped,
        "optimizer_groups": opt["param_groups"],
        "scheduler": loop.scheduler.state_dict(),
        "rng_numpy": loop.rng.bit_generator.state,
        "grad_scaler": loop.amp.scaler.state_dict(),
        "average_updates": loop.average.updates if loop.average is not None else 0,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    with written_atomically(path) as tmp:
        save_file(tensors, str(tmp), metadata={META_KEY: json.dumps(meta)})


def _packed(tensor: torch.Tensor) -> torch.Tensor:
    """A contiguous CPU copy, as safetensors stores (the model trains channels last)."""
    return tensor.detach().cpu().clone(memory_format=torch.contiguous_format)


def restore_checkpoint(loop: TrainingLoop, path: Path, fingerprint: dict[str, Any]) -> None:
    """Continue ``loop`` from a checkpoint written by `save_checkpoint` for the same settings."""
    meta, tensors = _read(path)
    stored = {**meta["fingerprint"]}
    for key in ("image", "labels"):  # older checkpoints kept the paths as given
        stored[key] = _resolved(stored.get(key) or [])
    stored.setdefault("ema_decay", 0.0)  # older checkpoints kept no weight average
    stored.setdefault("refit", None)  # nor refits
    stored.setdefault("lr_schedule", "plateau")  # nor other schedules
    stored.setdefault("schedule_epochs", None)
    if stored != _jsonable(fingerprint):
        changed = sorted(k for k in fingerprint if stored.get(k) != _jsonable(fingerprint[k]))
        raise ConfigError(
            f"{path}: the checkpoint was written with different {', '.join(changed)}; "
            "resume with the same settings, or drop --resume to start over"
        )
    loop.model.load_state_dict(_prefixed(tensors, "model."))
    best = _prefixed(tensors, "best.")
    loop.best_state = best or None
    if loop.average is not None:
        loop.average.load(_prefixed(tensors, "average."), int(meta["average_updates"]))
    state: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in _prefixed(tensors, "optim.").items():
        pid, name = key.split(".", 1)
        state.setdefault(int(pid), {})[name] = value.to(loop.device)
    loop.optimizer.load_state_dict({"state": state, "param_groups": meta["optimizer_groups"]})
    loop.scheduler.load_state_dict(meta["scheduler"])
    if meta["grad_scaler"]:
        loop.amp.scaler.load_state_dict(meta["grad_scaler"])
    torch.set_rng_state(tensors["rng.torch"])
    loop.rng.bit_generator.state = meta["rng_numpy"]
    loop.epoch = int(meta["epoch"])
    loop.history = [EpochReport(**r) for r in meta["history"]]
    loop.best_score = float(meta["best_score"])
    loop.best_epoch = int(meta["best_epoch"])
    loop.best_metrics = meta["best_metrics"]
    loop.stale_epochs = int(meta["stale_epochs"])
    loop.stopped = bool(meta["stopped"])


def _read(path: Path) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """The JSON metadata and the tensors of a checkpoint file; refuse anything else."""
    if not path.exists():
        raise ConfigError(
            f"{path}: no checkpoint to resume from; train without --resume first "
            "(or point --checkpoint-dir at the folder holding last.safetensors)"
        )
    try:
        with safe_open(str(path), "pt") as f:
            meta = json.loads((f.metadata() or {})[META_KEY])
        tensors = load_file(str(path))
    except (SafetensorError, KeyError, ValueError, OSError) as exc:
        raise ConfigError(f"{path}: not a geoseg checkpoint ({exc}); delete it") from None
    return meta, tensors


def _prefixed(tensors: Mapping[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value))
