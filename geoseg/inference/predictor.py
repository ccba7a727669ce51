"""The models on their device: raw tile batches in, mean class probabilities out.

`Predictor` normalizes raw bands with each package's statistics, runs one model or an ensemble
(same classes and bands, `check_ensemble`), optionally over the 8 dihedral flips/rotations
(TTA, `Dihedral`), and averages the softmax outputs. On CUDA it stages batches through pinned
buffers and runs in bf16 autocast; `probabilities` leaves the result on the device.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple, TypeVar

import numpy as np
import torch
from torch import nn

from geoseg.errors import ConfigError, ModelPackageError, option
from geoseg.inference.fold import fold_batch_norms
from geoseg.inference.heap import keep_large_allocations
from geoseg.inference.precision import Precision, autocast_dtype
from geoseg.models.package import ModelPackage
from geoseg.models.registry import required_multiple

ArrayT = TypeVar("ArrayT", np.ndarray, torch.Tensor)


class Dihedral(NamedTuple):
    """One of the 8 flips/rotations of a square tile: rotate ``k`` quarter turns, then flip."""

    k: int
    flip: bool

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.rot90(x, self.k, dims=(-2, -1)) if self.k % 4 else x  # rot90 by 0 copies
        return torch.flip(x, dims=(-1,)) if self.flip else x

    def inverse(self, y: torch.Tensor) -> torch.Tensor:
        y = torch.flip(y, dims=(-1,)) if self.flip else y
        return torch.rot90(y, -self.k, dims=(-2, -1)) if self.k % 4 else y


IDENTITY = (Dihedral(0, False),)


DIHEDRAL_8 = tuple(Dihedral(k, f) for k in range(4) for f in (False, True))


def check_ensemble(packages: Sequence[ModelPackage]) -> None:
    """Models averaged together must predict the same classes from the same bands."""
    first = packages[0]
    for other in packages[1:]:
        a, b = first.metadata, other.metadata
        if [c.model_dump() for c in a.classes] != [c.model_dump() for c in b.classes]:
            raise ModelPackageError(
                f"{other.path}: its classes differ from those of {first.path}; an ensemble "
                "averages probabilities, so every --model must have the same class list"
            )
        if a.band_indexes != b.band_indexes or a.dtype != b.dtype:
            raise ModelPackageError(
                f"{other.path}: reads bands {b.band_indexes} ({b.dtype}) but {first.path} "
                f"reads {a.band_indexes} ({a.dtype}); ensemble models must share their inputs"
            )


class Predictor:
    """One or more packages' models on a device: raw tile batches in, mean probabilities out.

    Each model normalizes the raw bands with its own package statistics; with ``tta`` every
    model also sees the 8 flips/rotations of each tile. All probabilities are averaged.
    """

    def __init__(
        self,
        packages: ModelPackage | Sequence[ModelPackage],
        device: torch.device,
        *,
        tta: bool = False,
        precision: Precision | str = Precision.AUTO,
        compile_model: bool = False,
    ):
        self.packages = [packages] if isinstance(packages, ModelPackage) else list(packages)
        check_ensemble(self.packages)
        self.device = device
        self.autocast_dtype = autocast_dtype(device, precision)
        if device.type == "cpu":
            keep_large_allocations()  # a third of the CPU forward was page faults
        self.transforms = DIHEDRAL_8 if tta else IDENTITY
        self.models: list[nn.Module] = []
        self._stats: list[tuple[torch.Tensor, torch.Tensor]] = []
        for package in self.packages:
            model = package.build()
            # one pass less over each folded activation; the probe finds the pairs that are
            # not in a Sequential (timm encoders, ResNet blocks)
            fold_batch_norms(model, fold_probe(model, len(package.metadata.bands)))
            # channels_last: faster convolutions with cuDNN and with oneDNN on CPU alike
            model = model.to(device).to(memory_format=torch.channels_last)
            if compile_model:
                model = torch.compile(model)
            self.models.append(model)
            norm = package.metadata.normalization
            mean = torch.tensor(norm.mean, dtype=torch.float32, device=device)
            std = torch.tensor(norm.std, dtype=torch.float32, device=device)
            self._stats.append((mean[:, None, None], std[:, None, None]))
        self.multiple = max(required_multiple(m) for m in self.models)
        # CUDA: one pinned host buffer per (shape, dtype) of batch, reused across batches,
        # with the event of its last host-to-device copy (wait for it before refilling)
        self._staging: dict[tuple[tuple[int, ...], str], tuple[torch.Tensor, Any]] = {}

    @property
    def package(self) -> ModelPackage:
        """The first package: classes, bands and tile defaults of the run."""
        return self.packages[0]

    @property
    def model(self) -> nn.Module:
        return self.models[0]

    @model.setter
    def model(self, module: nn.Module) -> None:
        """Replace the (single) model, e.g. with a pointwise one in tests."""
        self.models = [module]

    def check_tile_size(self, tile_px: int) -> None:
        """The encoder needs sizes divisible by its stride; name the nearest sizes that work."""
        if tile_px % self.multiple:
            lower = tile_px // self.multiple * self.multiple
            raise ConfigError(
                f"{option('tile_size')} {tile_px}: this model needs a multiple of "
                f"{self.multiple} px; use {max(lower, self.multiple)} or {lower + self.multiple}"
            )

    def fill_device_batch_size(self, tile_px: int, n_bands: int, cap: int = 64) -> int | None:
        """On CUDA, the batch that fills ~60 % of free memory (probed with one tile); else None.

        The peak memory of one probe tile (all models, TTA included) is taken as the cost per
        tile, which errs on the safe side: activations are freed between layers.
        """
        if self.device.type != "cuda":
            return None
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(self.device)
        before = torch.cuda.memory_allocated(self.device)
        probe = np.zeros((1, n_bands, tile_px, tile_px), dtype=np.float32)
        self(probe, np.ones((1, tile_px, tile_px), dtype=bool))
        per_tile = max(torch.cuda.max_memory_allocated(self.device) - before, 1)
        free, _ = torch.cuda.mem_get_info(self.device)
        return int(max(1, min(cap, 0.6 * free // per_tile)))

    def __call__(self, raw: np.ndarray, valid: np.ndarray) -> np.ndarray:
        """(B, bands, t, t) raw values + (B, t, t) valid mask -> (B, classes, t, t) float32."""
        return self.probabilities(raw, valid)[0].cpu().numpy()

    def probabilities(
        self, raw: np.ndarray, valid: np.ndarray
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Like `__call__`, but the probabilities stay on the device, returned with the valid
        mask (B, t, t) bool as transferred there. On CUDA the work may still be queued: use
        the tensors on the current stream (or synchronize) before reading them."""
        x = self._to_device(raw)
        v = self._to_device(valid)
        total: torch.Tensor | None = None
        with torch.inference_mode(), self._autocast():
            for model, (mean, std) in zip(self.models, self._stats, strict=True):
                xn = normalize_channels_last(x, v, mean, std)
                for t in self.transforms:
                    probs = t.inverse(torch.softmax(model(t.forward(xn)).float(), dim=1))
                    total = probs if total is None else total + probs
            n = len(self.models) * len(self.transforms)
            assert total is not None
            return (total / n if n > 1 else total), v

    def _to_device(self, array: np.ndarray) -> torch.Tensor:
        """The array as a tensor on the device; on CUDA through a reused pinned buffer."""
        if self.device.type != "cuda":
            return torch.from_numpy(array)
        key = (array.shape, array.dtype.str)
        entry = self._staging.get(key)
        if entry is None:
            if len(self._staging) >= 4:  # other tile or batch sizes: drop the old buffers
                for _, done in self._staging.values():
                    done.synchronize()
                self._staging.clear()
            pinned = torch.from_numpy(np.empty_like(array)).pin_memory()
        else:
            pinned, done = entry
            done.synchronize()  # the previous copy out of this buffer has finished
        np.copyto(pinned.numpy(), array)
        out = pinned.to(self.device, non_blocking=True)
        done = torch.cuda.Event()
        done.record(torch.cuda.current_stream(self.device))
        self._staging[key] = (pinned, done)
        return out

    def _autocast(self) -> torch.autocast:
        dtype = self.autocast_dtype
        return torch.autocast(self.device.type, dtype=dtype, enabled=dtype is not None)


def fold_probe(model: nn.Module, n_bands: int) -> torch.Tensor:
    """A small fixed random batch the model accepts, for tracing `fold_batch_norms`."""
    side = 2 * max(32, required_multiple(model))
    gen = torch.Generator().manual_seed(0)
    return torch.randn(1, n_bands, side, side, generator=gen)


def normalize_channels_last(
    x: torch.Tensor, valid: torch.Tensor, mean: torch.Tensor, std: torch.Tensor
) -> torch.Tensor:
    """`normalize` of a (B, bands, H, W) batch of any dtype, written once into a float32
    channels-last tensor (the layout the convolutions want): the same operations in the same
    order as `normalize`, so the same bits, without its temporaries and layout copy."""
    out = torch.empty(
        x.shape, dtype=torch.float32, device=x.device, memory_format=torch.channels_last
    )
    if x.dtype == torch.float32:
        torch.sub(x, mean, out=out)
    else:  # stored integers (CUDA staging): exact in float32, converted on the device
        out.copy_(x).sub_(mean)
    out.div_(std)
    # most tiles are valid throughout, and times 1 changes no bit: on the CPU that pass is
    # skipped (on CUDA asking would wait for the device, and the pass is cheap there)
    if valid.device.type == "cpu" and valid.numpy().all():  # numpy: 10x faster than torch
        return out
    return out.mul_(valid[:, None, :, :])


def normalize(data: ArrayT, valid: ArrayT, mean: ArrayT, std: ArrayT) -> ArrayT:
    """``(x - mean) / std`` per band, 0 (the training mean) where invalid.

    Works on numpy arrays and torch tensors alike: ``data`` is (..., bands, H, W), ``valid``
    (..., H, W), ``mean``/``std`` (bands, 1, 1).
    """
    return (data - mean) / std * valid[..., None, :, :]
