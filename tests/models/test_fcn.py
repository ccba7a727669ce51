"""FCN-32s/16s/8s: exact output size, smp encoders, parameter counts, bilinear init."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from geoseg.errors import ConfigError
from geoseg.models.fcn import FCN, bilinear_kernel, upsampler
from geoseg.models.registry import build_model, count_parameters, required_multiple
from tests.support.models import ODD_SIZES


@pytest.mark.parametrize("name", ["fcn8s", "fcn16s", "fcn32s"])
@pytest.mark.parametrize("size", ODD_SIZES)
def test_fcn_output_is_exactly_h_by_w(name: str, size: tuple[int, int]) -> None:
    model = build_model(name, {"in_channels": 4, "classes": 5, "width": 1 / 16}).eval()
    with torch.inference_mode():
        out = model(torch.randn(2, 4, *size))
    assert out.shape == (2, 5, *size)


@pytest.mark.parametrize("name", ["fcn8s", "fcn32s"])
def test_fcn_head_on_an_smp_encoder(name: str) -> None:
    model = build_model(
        name, {"in_channels": 4, "classes": 6, "encoder": "tu-mobilenetv3_small_100"}
    ).eval()
    with torch.inference_mode():
        out = model(torch.randn(1, 4, 250, 333))
    assert out.shape == (1, 6, 250, 333)
    assert required_multiple(model) == 1


def test_unknown_encoder_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="no-such-encoder"):
        build_model("fcn8s", {"in_channels": 4, "classes": 2, "encoder": "no-such-encoder"})


def _vgg16_fcn_parameters(in_channels: int, classes: int, stride: int) -> int:
    """Plain (no batch norm) full-width FCN parameters, counted by hand from the paper."""
    convs = [(in_channels, 64), (64, 64), (64, 128), (128, 128), (128, 256), (256, 256)]
    convs += [(256, 256), (256, 512), (512, 512), (512, 512), (512, 512), (512, 512), (512, 512)]
    total = sum(a * b * 9 + b for a, b in convs)
    total += 512 * 4096 * 49 + 4096  # fc6 as a 7x7 conv
    total += 4096 * 4096 + 4096  # fc7 as a 1x1 conv
    total += 4096 * classes + classes  # score_fr
    up = classes * classes  # per kernel element of a transposed conv, no bias
    if stride <= 16:
        total += 512 * classes + classes + up * 4 * 4  # score_pool4, upscore2
    if stride == 8:
        total += 256 * classes + classes + up * 4 * 4  # score_pool3, upscore_pool4
    return total + up * (2 * stride) ** 2  # final upsampling


@pytest.mark.parametrize("stride", [8, 16, 32])
def test_full_width_fcn_parameter_counts(stride: int) -> None:
    # built on the meta device: the counts without allocating ~0.5 GB of weights
    with torch.device("meta"):
        plain = FCN(in_channels=3, classes=21, stride=stride, batch_norm=False)
        with_bn = FCN(in_channels=3, classes=21, stride=stride)
    n = count_parameters(plain)
    assert n == _vgg16_fcn_parameters(3, 21, stride)
    # the classic figure: FCN-8s (VGG16, PASCAL's 21 classes) has ~134 M parameters
    assert 134e6 < n < 137e6
    # batch norm: +2 parameters per channel of the 13 convs, fc6 and fc7, -1 conv bias each
    assert count_parameters(with_bn) - n == 4224 + 2 * 4096


def test_bilinear_kernel_matches_the_fcn_paper() -> None:
    k = bilinear_kernel(2, 4)  # x2 upsampling
    row = torch.tensor([0.25, 0.75, 0.75, 0.25])
    assert torch.allclose(k[0, 0], row[:, None] * row[None, :])
    assert torch.equal(k[0, 1], torch.zeros(4, 4))  # channels are upsampled independently


@pytest.mark.parametrize("factor", [2, 8, 16, 32])
def test_upsampler_starts_as_bilinear_interpolation(factor: int) -> None:
    layer = upsampler(3, factor)
    x = torch.randn(1, 3, 6, 7)
    with torch.no_grad():
        y = layer(x)
    assert y.shape == (1, 3, 6 * factor, 7 * factor)
    expected = F.interpolate(x, scale_factor=factor, mode="bilinear", align_corners=False)
    # equal away from the border (where the transposed conv sees zeros, not replicated edges)
    m = factor
    assert torch.allclose(y[..., m:-m, m:-m], expected[..., m:-m, m:-m], atol=1e-5)


def test_fcn_skip_scores_start_at_zero() -> None:
    model = FCN(in_channels=4, classes=3, stride=8, width=1 / 16)
    for layer in (model.score_pool3, model.score_pool4):
        assert torch.count_nonzero(layer.weight) == 0
        assert torch.count_nonzero(layer.bias) == 0
