"""One factory for every model geoseg can build, looked up by name.

A model package stores only ``(name, args)``; `build_model` turns them back into a module, so a
package rebuilds its network without code changes. geoseg's own networks are ``fcn32s``,
``fcn16s``, ``fcn8s`` (VGG16-style backbone, or any smp/timm encoder with ``encoder=...``) and
``unet`` (the classic U-Net), all with a ``width`` multiplier, and ``pointwise`` (a 1x1
convolution: a per-pixel linear classifier, the benchmarks' null model). segmentation-models-pytorch
architectures are exposed as ``smp-<arch>`` with any smp/timm encoder, always with
``encoder_weights=None`` (nothing is downloaded at run time).
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


def _fcn_builder(stride: int) -> Callable[..., nn.Module]:
    def build(**kwargs: Any) -> nn.Module:
        from geoseg.models.fcn import FCN

        return _construct(FCN, f"fcn{stride}s", stride=stride, **kwargs)

    return build


def _unet(**kwargs: Any) -> nn.Module:
    from geoseg.models.unet import UNet

    return _construct(UNet, "unet", **kwargs)


class Pointwise(nn.Conv2d):
    """A 1x1 convolution: a per-pixel linear classifier, and the null model of the benchmarks
    (the pipeline's own cost with next to no model time)."""

    required_multiple = 1

    def __init__(self, *, in_channels: int, classes: int) -> None:
        super().__init__(in_channels, classes, kernel_size=1)


def _pointwise(**kwargs: Any) -> nn.Module:
    return _construct(Pointwise, "pointwise", **kwargs)


def _construct(cls: Callable[..., nn.Module], name: str, **kwargs: Any) -> nn.Module:
    try:
        return cls(**kwargs)
    except TypeError as exc:
        raise ConfigError(f"cannot build {name} with {kwargs}: {exc}") from None


MODELS: Mapping[str, Callable[..., nn.Module]] = {
    "fcn32s": _fcn_builder(32),
    "fcn16s": _fcn_builder(16),
    "fcn8s": _fcn_builder(8),
    "unet": _unet,
    "pointwise": _pointwise,
    **{name: _smp_builder(arch) for name, arch in _SMP_ARCHS.items()},
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
    """Input sizes must be a multiple of this (the encoder's total stride); 32 when unknown.

    Models that pad and crop inside (geoseg's FCN and U-Net) declare ``required_multiple = 1``.
    """
    declared = getattr(model, "required_multiple", None)
    if isinstance(declared, int):
        return declared
    encoder = getattr(model, "encoder", None)
    depth = getattr(encoder, "_depth", None)
    return 2**depth if isinstance(depth, int) else 32


def probe_output(model: nn.Module, in_channels: int, size_px: int) -> torch.Size:
    """Shape of the model's output for one zero tile: a cheap check of a rebuilt package."""
    with torch.inference_mode():
        return model(torch.zeros(1, in_channels, size_px, size_px)).shape
