"""The classic U-Net: exact output size for any input, parameter count, width multiplier."""

from __future__ import annotations

import pytest
import torch

from geoseg.models.registry import build_model, count_parameters
from geoseg.models.unet import UNet
from tests.support.models import ODD_SIZES


@pytest.mark.parametrize("size", ODD_SIZES)
def test_unet_output_is_exactly_h_by_w(size: tuple[int, int]) -> None:
    model = build_model("unet", {"in_channels": 7, "classes": 3, "width": 1 / 16}).eval()
    with torch.inference_mode():
        out = model(torch.randn(1, 7, *size))
    assert out.shape == (1, 3, *size)


def test_full_width_unet_has_about_31_million_parameters() -> None:
    with torch.device("meta"):
        n = count_parameters(UNet(in_channels=3, classes=2))
    assert 30.5e6 < n < 31.5e6  # the classic U-Net with batch norm: 31.0 M


def test_width_multiplier_scales_channels_and_parameters() -> None:
    with torch.device("meta"):
        full = count_parameters(UNet(in_channels=4, classes=5))
        quarter = count_parameters(UNet(in_channels=4, classes=5, width=0.25))
        small = UNet(in_channels=4, classes=5, width=0.25)
    assert small.inc[0].out_channels == 16
    assert small.down[-1][0].out_channels == 256
    # convolution parameters scale with width^2
    assert 0.055 < quarter / full < 0.07
