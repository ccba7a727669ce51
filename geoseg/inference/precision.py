"""Which arithmetic a model runs in: bf16 autocast where the hardware does it fast, else fp32.

Shared by training and prediction so that ``--precision`` means the same everywhere. On a CPU
with Intel AMX (Sapphire Rapids and newer), oneDNN runs bf16 convolutions 2-3x faster than
fp32 (measured here: a U-Net/ResNet-18 training step 0.95 -> 0.42 s), so ``auto`` trains in
bf16 there. Prediction on the CPU stays fp32 under ``auto``, so a map is the same on every CPU;
``bf16`` asks for the faster arithmetic, whose 8-bit mantissa changes the class of pixels where
two classes score within about 1 % of each other.
"""

from __future__ import annotations

from enum import StrEnum
from typing import TYPE_CHECKING

from geoseg.errors import ConfigError, option

if TYPE_CHECKING:  # torch is imported where a model runs, not where settings are read
    import torch


class Precision(StrEnum):
    """``auto``: bf16 on CUDA (fp16 without bf16) and for training on AMX CPUs, else fp32."""

    AUTO = "auto"
    FP32 = "fp32"
    BF16 = "bf16"
    FP16 = "fp16"


def cpu_has_fast_bf16() -> bool:
    """Whether this CPU multiplies bf16 matrices in hardware (AMX tiles)."""
    import torch

    probe = getattr(torch.cpu, "_is_amx_tile_supported", None)
    return bool(probe is not None and probe())


def autocast_dtype(
    device: torch.device, precision: Precision | str, *, training: bool = False
) -> torch.dtype | None:
    """The autocast dtype of ``precision`` on ``device`` (for training or prediction); None
    for plain fp32."""
    import torch

    try:
        precision = Precision(precision)
    except ValueError:
        raise ConfigError(
            f"{option('precision')} {precision!r}: use auto, fp32, bf16 or fp16"
        ) from None
    if precision == Precision.FP32:
        return None
    if device.type == "cuda":
        if precision == Precision.FP16 or not torch.cuda.is_bf16_supported():
            return torch.float16
        return torch.bfloat16
    if precision == Precision.FP16:
        raise ConfigError(f"{option('precision')} fp16 needs CUDA; on the CPU use bf16 or fp32")
    if precision == Precision.BF16 or (training and cpu_has_fast_bf16()):
        return torch.bfloat16
    return None
