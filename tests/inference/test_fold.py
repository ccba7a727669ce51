"""Batch-norm folding: the folded network computes what the unfolded one does."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from geoseg.inference.fold import fold_batch_norms
from geoseg.models.registry import build_model


def _trained_stats(model: nn.Module) -> nn.Module:
    """Give every batch norm non-trivial running statistics and affine parameters."""
    gen = torch.Generator().manual_seed(0)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            n = m.num_features
            m.running_mean.copy_(torch.randn(n, generator=gen))
            m.running_var.copy_(torch.rand(n, generator=gen) * 2 + 0.1)
            m.weight.data.copy_(torch.randn(n, generator=gen))
            m.bias.data.copy_(torch.randn(n, generator=gen))
    return model.eval()


def _norms(model: nn.Module) -> int:
    """Batch norms left: torch's and timm's ``BatchNormAct2d`` (a subclass)."""
    return sum(isinstance(m, nn.BatchNorm2d) for m in model.modules())


@pytest.mark.parametrize(
    ("name", "args", "structural", "traced"),
    [
        ("unet", {"width": 0.125}, 18, 0),  # geoseg's DoubleConv blocks: two pairs each
        # resnet18: the decoder's 10 pairs and the 3 downsample shortcuts (Sequential(conv,
        # bn)); traced: the stem and the 16 pairs inside the basic blocks
        ("smp-unet", {"encoder_name": "resnet18", "decoder_channels": [32, 16, 8, 8, 8]}, 13, 17),
        # timm encoder: its 34 conv -> BatchNormAct2d pairs are attributes, found by tracing
        (
            "smp-unet",
            {"encoder_name": "tu-mobilenetv3_small_100", "decoder_channels": [16] * 5},
            10,
            34,
        ),
    ],
)
@pytest.mark.parametrize("probe", [False, True])
def test_folded_network_gives_the_same_outputs(
    name: str, args: dict, structural: int, traced: int, probe: bool
) -> None:
    model = _trained_stats(build_model(name, {"in_channels": 3, "classes": 4, **args}))
    folded = copy.deepcopy(model)
    gen = torch.Generator().manual_seed(2)
    expected = structural + traced if probe else structural
    given = torch.randn(1, 3, 64, 64, generator=gen) if probe else None
    assert fold_batch_norms(folded, given) == expected
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        want, got = model(x), folded(x)
    assert torch.allclose(got, want, rtol=1e-4, atol=1e-4 * want.abs().max().item())
    assert not torch.equal(got, torch.zeros_like(got))
    assert _norms(folded) == _norms(model) - expected
    if probe:
        assert _norms(folded) == 0


@pytest.mark.parametrize("bias", [True, False])
def test_a_traced_pair_whose_conv_output_is_also_used_elsewhere_is_undone(bias: bool) -> None:
    """The trace sees conv -> bn; it cannot see ``+ y``: the probe's check undoes the fold,
    weights, bias (or its absence) and the norm all put back."""

    class Residual(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3, padding=1, bias=bias)
            self.bn = nn.BatchNorm2d(4)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            y = self.conv(x)
            return self.bn(y) + y

    model = _trained_stats(Residual())
    folded = copy.deepcopy(model)
    x = torch.randn(2, 3, 16, 16)
    assert fold_batch_norms(folded, x) == 0
    assert isinstance(folded.bn, nn.BatchNorm2d)
    assert (folded.conv.bias is None) == (not bias)
    want = model.state_dict()
    assert folded.state_dict().keys() == want.keys()
    assert all(torch.equal(v, want[k]) for k, v in folded.state_dict().items())
    assert torch.equal(folded(x), model(x))


def test_a_model_that_cannot_run_the_probe_keeps_its_structural_folds() -> None:
    """E.g. smp's PAN needs more than 64 px for its pooling pyramid."""

    class Picky(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.body = nn.Sequential(nn.Conv2d(3, 4, 1), nn.BatchNorm2d(4))
            self.conv, self.bn = nn.Conv2d(4, 4, 1), nn.BatchNorm2d(4)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            if x.shape[-1] < 128:
                raise RuntimeError("input too small")
            return self.bn(self.conv(self.body(x)))

    model = _trained_stats(Picky())
    assert fold_batch_norms(model, torch.randn(1, 3, 64, 64)) == 1
    assert isinstance(model.bn, nn.BatchNorm2d)
    assert fold_batch_norms(model, torch.randn(1, 3, 128, 128)) == 1  # now the traced pair
    assert isinstance(model.bn, nn.Identity)


def test_conv_bias_and_missing_affine_are_folded() -> None:
    conv = nn.Conv2d(3, 5, 3, padding=1, bias=True)
    norm = nn.BatchNorm2d(5, affine=False)
    norm.running_mean.uniform_(-1, 1)
    norm.running_var.uniform_(0.5, 2)
    model = nn.Sequential(conv, norm, nn.ReLU()).eval()
    folded = copy.deepcopy(model)
    assert fold_batch_norms(folded) == 1
    assert isinstance(folded[1], nn.Identity)
    x = torch.randn(1, 3, 16, 16)
    assert torch.allclose(folded(x), model(x), atol=1e-5)


def test_pairs_outside_a_sequential_or_of_other_shapes_stay() -> None:
    class Branchy(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 1)
            self.bn = nn.BatchNorm2d(4)  # dataflow unknown to the folder: not a Sequential

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.bn(self.conv(x)) + self.conv(x)

    # a norm over other channels than the conv's outputs is not its norm
    odd = nn.Sequential(nn.Conv2d(3, 4, 1), nn.Identity(), nn.BatchNorm2d(4))
    assert fold_batch_norms(Branchy().eval()) == 0
    assert fold_batch_norms(odd.eval()) == 0
    # a conv also used outside the pair (tied weights) must keep its own weights
    shared = nn.Conv2d(4, 4, 1)
    tied = nn.Sequential(nn.Sequential(shared, nn.BatchNorm2d(4)), shared).eval()
    assert fold_batch_norms(tied) == 0


def test_training_mode_is_refused() -> None:
    with pytest.raises(ValueError, match="eval mode"):
        fold_batch_norms(nn.Sequential(nn.Conv2d(1, 1, 1), nn.BatchNorm2d(1)))
