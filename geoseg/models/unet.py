"""The classic U-Net (Ronneberger, Fischer & Brox): a contracting path and a symmetric
expanding path joined by concatenated skip connections.

Five levels of 64, 128, 256, 512 and 1024 channels (times ``width``); each level is two 3x3
convolutions with batch norm and ReLU; 2x2 max pooling goes down, 2x2 transposed convolutions
go up. Convolutions are padded ("same"), so the output has the input's size: inputs of any size
are zero-padded at the bottom/right to a multiple of 16 and the output is cropped back.
"""

from __future__ import annotations

from itertools import pairwise

import torch
import torch.nn.functional as F
from torch import nn

from geoseg.errors import ConfigError
from geoseg.models.fcn import scaled

UNET_CHANNELS: tuple[int, ...] = (64, 128, 256, 512, 1024)
_TOTAL_STRIDE = 2 ** (len(UNET_CHANNELS) - 1)


class DoubleConv(nn.Sequential):
    """(3x3 conv -> batch norm -> ReLU) twice."""

    def __init__(self, c_in: int, c_out: int):
        super().__init__(
            nn.Conv2d(c_in, c_out, 3, padding=1, bias=False),
            nn.BatchNorm2d(c_out),
            nn.ReLU(inplace=True),
            nn.Conv2d(c_out, c_out, 3, padding=1, bias=False),
            nn.BatchNorm2d(c_out),
            nn.ReLU(inplace=True),
        )


class Up(nn.Module):
    """x2 transposed conv (halving channels), concatenate the skip, then a double conv."""

    def __init__(self, c_in: int, c_skip: int, c_out: int):
        super().__init__()
        self.up = nn.ConvTranspose2d(c_in, c_in // 2 or 1, 2, stride=2)
        self.conv = DoubleConv((c_in // 2 or 1) + c_skip, c_out)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        return self.conv(torch.cat([skip, self.up(x)], dim=1))


class UNet(nn.Module):
    """U-Net for ``in_channels`` bands and ``classes`` outputs; ``width`` scales every level."""

    required_multiple = 1
    """Any input size works (padded to 16 inside, output cropped to H x W)."""

    def __init__(self, *, in_channels: int, classes: int, width: float = 1.0):
        super().__init__()
        if not width > 0:
            raise ConfigError(f"U-Net width multiplier must be > 0, got {width}")
        ch = [scaled(c, width) for c in UNET_CHANNELS]
        self.inc = DoubleConv(in_channels, ch[0])
        self.down = nn.ModuleList(DoubleConv(a, b) for a, b in pairwise(ch))
        self.up = nn.ModuleList(Up(ch[i + 1], ch[i], ch[i]) for i in reversed(range(len(ch) - 1)))
        self.outc = nn.Conv2d(ch[0], classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        height, width = x.shape[-2:]
        x = F.pad(x, (0, -width % _TOTAL_STRIDE, 0, -height % _TOTAL_STRIDE))
        skips = [self.inc(x)]
        for down in self.down:
            skips.append(down(F.max_pool2d(skips[-1], 2)))
        x = skips.pop()
        for up in self.up:
            x = up(x, skips.pop())
        return self.outc(x)[..., :height, :width]
