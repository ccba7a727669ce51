"""Fully convolutional networks (Long, Shelhamer & Darrell): FCN-32s, FCN-16s and FCN-8s.

A VGG16-style backbone in fully convolutional form: the five conv blocks (pool1..pool5, total
stride 32), then fc6 and fc7 as a 7x7 and a 1x1 convolution. 1x1 score layers read pool3
(stride 8), pool4 (stride 16) and fc7 (stride 32); coarse scores are upsampled by transposed
convolutions initialized to bilinear interpolation and fused with finer ones by addition:

- FCN-32s: score(fc7), upsampled x32;
- FCN-16s: score(fc7) x2 + score(pool4), upsampled x16;
- FCN-8s: (score(fc7) x2 + score(pool4)) x2 + score(pool3), upsampled x8.

Any input size works: the input is zero-padded at the bottom/right to a multiple of 32 (0 is
the training mean after normalization), every upsampling is exactly x2/x8/x16/x32, and the
output is cropped back to exactly H x W. A ``width`` multiplier scales every channel count so
a small FCN trains on a CPU; ``batch_norm`` (default on) lets it train from scratch, since no
pretrained VGG weights are downloaded. The same head also runs on any segmentation-models-
pytorch/timm encoder (``encoder="resnet34"``) with ``encoder_weights=None``: its stride 8, 16
and 32 features take the places of pool3, pool4 and fc7.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from geoseg.errors import ConfigError

FCN_STRIDES: tuple[int, ...] = (8, 16, 32)

# VGG16 configuration D: channels per conv, "M" = 2x2 max pool.
_VGG16: tuple[tuple[int, ...], ...] = (
    (64, 64),
    (128, 128),
    (256, 256, 256),
    (512, 512, 512),
    (512, 512, 512),
)
_TOTAL_STRIDE = 32


def scaled(channels: int, width: float) -> int:
    """``channels * width`` rounded, at least 1 (the width multiplier of small models)."""
    return max(1, round(channels * width))


def bilinear_kernel(channels: int, kernel_size: int) -> torch.Tensor:
    """Weights (channels, channels, k, k) of a transposed conv doing bilinear upsampling.

    Each channel is upsampled independently (zero off the diagonal), as in the FCN paper's
    ``upsample_filt``: for factor f the kernel is 2f with stride f and padding f/2.
    """
    factor = (kernel_size + 1) // 2
    center = factor - 1 if kernel_size % 2 == 1 else factor - 0.5
    og = torch.arange(kernel_size, dtype=torch.float64)
    filt1d = 1 - torch.abs(og - center) / factor
    filt = (filt1d[:, None] * filt1d[None, :]).float()
    weight = torch.zeros(channels, channels, kernel_size, kernel_size)
    weight[range(channels), range(channels)] = filt
    return weight


def upsampler(channels: int, factor: int) -> nn.ConvTranspose2d:
    """A learnable x``factor`` upsampling, initialized to bilinear: output = factor x input."""
    layer = nn.ConvTranspose2d(
        channels, channels, 2 * factor, stride=factor, padding=factor // 2, bias=False
    )
    with torch.no_grad():
        layer.weight.copy_(bilinear_kernel(channels, 2 * factor))
    return layer


def _conv(c_in: int, c_out: int, kernel: int, batch_norm: bool) -> list[nn.Module]:
    layers: list[nn.Module] = [
        nn.Conv2d(c_in, c_out, kernel, padding=kernel // 2, bias=not batch_norm)
    ]
    if batch_norm:
        layers.append(nn.BatchNorm2d(c_out))
    layers.append(nn.ReLU(inplace=True))
    return layers


class VGGBackbone(nn.Module):
    """VGG16 conv blocks + fc6 (7x7) / fc7 (1x1) convs; returns (pool3, pool4, fc7)."""

    def __init__(
        self,
        in_channels: int,
        *,
        width: float = 1.0,
        fc_channels: int | None = None,
        batch_norm: bool = True,
        dropout: float = 0.5,
    ):
        super().__init__()
        blocks = []
        c_in = in_channels
        for block in _VGG16:
            layers: list[nn.Module] = []
            for c in block:
                c_out = scaled(c, width)
                layers += _conv(c_in, c_out, 3, batch_norm)
                c_in = c_out
            layers.append(nn.MaxPool2d(2, stride=2, ceil_mode=True))
            blocks.append(nn.Sequential(*layers))
        self.blocks = nn.ModuleList(blocks)
        fc = fc_channels if fc_channels is not None else scaled(4096, width)
        self.fc = nn.Sequential(
            *_conv(c_in, fc, 7, batch_norm),
            nn.Dropout2d(dropout),
            *_conv(fc, fc, 1, batch_norm),
            nn.Dropout2d(dropout),
        )
        self.out_channels = (scaled(256, width), scaled(512, width), fc)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        feats = []
        for block in self.blocks:
            x = block(x)
            feats.append(x)
        return feats[2], feats[3], self.fc(feats[4])


class EncoderBackbone(nn.Module):
    """An smp/timm encoder (no pretrained weights); returns its stride 8, 16 and 32 features."""

    def __init__(self, in_channels: int, encoder: str):
        super().__init__()
        import segmentation_models_pytorch as smp

        try:
            self.encoder = smp.encoders.get_encoder(
                encoder, in_channels=in_channels, depth=5, weights=None
            )
        except (KeyError, ValueError, RuntimeError) as exc:
            raise ConfigError(
                f"encoder {encoder!r} cannot be built ({str(exc).splitlines()[0]}); "
                "use an smp encoder name such as resnet34 or a timm one as tu-<name>"
            ) from None
        channels = self.encoder.out_channels
        self.out_channels = (channels[-3], channels[-2], channels[-1])

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        feats = self.encoder(x)
        return feats[-3], feats[-2], feats[-1]


class FCN(nn.Module):
    """FCN-32s/16s/8s: score layers, bilinear-initialized upsampling, fusion by addition."""

    required_multiple = 1
    """Any input size works (padded to 32 inside, output cropped to H x W)."""

    def __init__(
        self,
        *,
        in_channels: int,
        classes: int,
        stride: int = 8,
        width: float = 1.0,
        fc_channels: int | None = None,
        batch_norm: bool = True,
        dropout: float = 0.5,
        encoder: str | None = None,
    ):
        super().__init__()
        if stride not in FCN_STRIDES:
            raise ConfigError(f"FCN stride {stride} is not one of {FCN_STRIDES}")
        if not width > 0:
            raise ConfigError(f"FCN width multiplier must be > 0, got {width}")
        self.stride = stride
        self.backbone: nn.Module
        if encoder is None:
            self.backbone = VGGBackbone(
                in_channels,
                width=width,
                fc_channels=fc_channels,
                batch_norm=batch_norm,
                dropout=dropout,
            )
        else:
            self.backbone = EncoderBackbone(in_channels, encoder)
        c3, c4, c5 = self.backbone.out_channels
        self.score_fr = nn.Conv2d(c5, classes, 1)
        if stride <= 16:
            self.score_pool4 = nn.Conv2d(c4, classes, 1)
            self.upscore2 = upsampler(classes, 2)
        if stride == 8:
            self.score_pool3 = nn.Conv2d(c3, classes, 1)
            self.upscore_pool4 = upsampler(classes, 2)
        self.upscore_final = upsampler(classes, stride)
        # Skip score layers start at zero, as in the paper: training begins from the coarser net.
        for name in ("score_pool4", "score_pool3"):
            layer = getattr(self, name, None)
            if layer is not None:
                nn.init.zeros_(layer.weight)
                nn.init.zeros_(layer.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        height, width = x.shape[-2:]
        x = F.pad(x, (0, -width % _TOTAL_STRIDE, 0, -height % _TOTAL_STRIDE))
        pool3, pool4, top = self.backbone(x)
        score = self.score_fr(top)
        if self.stride <= 16:
            score = _fuse(self.upscore2(score), self.score_pool4(pool4))
        if self.stride == 8:
            score = _fuse(self.upscore_pool4(score), self.score_pool3(pool3))
        return self.upscore_final(score)[..., :height, :width]


def _fuse(upsampled: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
    """Sum of two score maps aligned at the top-left corner (cropped to the common size)."""
    h = min(upsampled.shape[-2], skip.shape[-2])
    w = min(upsampled.shape[-1], skip.shape[-1])
    return upsampled[..., :h, :w] + skip[..., :h, :w]
