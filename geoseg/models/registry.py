"""One factory for every model geoseg can build, looked up by name.

A model package stores only ``(name, args)``; `build_model` turns them back into a module, so a
package rebuilds its network without code changes. segmentation-models-pytorch architectures
are exposed as ``smp-<arch>`` with any smp/timm encoder, always with ``encoder_weights=None``
(nothing is downloaded at run time).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import nn

from geoseg.errors import ConfigError

_SMP_ARCHS = {
    "smp-unet": "Unet",
    "smp-unetplusplus": "UnetPlusPlus",
    "smp-fpn": "FPN",
    "smp-pspnet": "PSPNet",
    "smp-deeplabv3": "DeepLabV3",
    "smp-deeplabv3plus": "DeepLabV3Plus",
    "smp-linknet": "Linknet",
    "smp-manet": "MAnet",
    "smp-pan": "PAN",
    "smp-upernet": "UPerNet",
    "smp-segformer": "Segformer",
}


def _smp_builder(arch: str) -> Callable[..., nn.Module]:
    def build(*, in_channels: int, classes: int, **kwargs: Any) -> nn.Module:
        import segmentation_models_pytorch as smp

        kwargs = {"encoder_name": "resnet34", **kwargs, "encoder_weights": None}
        if "decoder_channels" in kwargs:
            kwargs["decoder_channels"] = tuple(kwargs["decoder_channels"])
        cls = getattr(smp, arch)
        try:
            return cls(in_channels=in_channels, classes=classes, **kwargs)
        except (TypeError, KeyError, ValueError) as exc:
            raise ConfigError(f"cannot build {arch} with {kwargs}: {exc}") from exc

    return build


MODELS: Mapping[str, Callable[..., nn.Module]] = {
    name: _smp_builder(arch) for name, arch in _SMP_ARCHS.items()
}


def build_model(name: str, args: Mapping[str, Any]) -> nn.Module:
    """Build model ``name`` with keyword ``args`` (must include in_channels and classes)."""
    try:
        factory = MODELS[name]
    except KeyError:
        raise ConfigError(
            f"unknown model architecture {name!r}; choose one of: {', '.join(sorted(MODELS))}"
        ) from None
    return factory(**dict(args))


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def required_multiple(model: nn.Module) -> int:
    """Input sizes must be a multiple of this (the encoder's total stride); 32 when unknown."""
    encoder = getattr(model, "encoder", None)
    depth = getattr(encoder, "_depth", None)
    return 2**depth if isinstance(depth, int) else 32


def probe_output(model: nn.Module, in_channels: int, size_px: int) -> torch.Size:
    """Shape of the model's output for one zero tile: a cheap check of a rebuilt package."""
    with torch.inference_mode():
        return model(torch.zeros(1, in_channels, size_px, size_px)).shape
