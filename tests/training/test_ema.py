"""The moving average of the weights: its arithmetic, and that training packages it."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from torch import nn

from geoseg.models.package import load_package
from geoseg.training.ema import WeightAverage, warmed_decay
from geoseg.training.loop import train
from tests.support.training import tiny_settings


def _net() -> nn.Module:
    return nn.Sequential(nn.Conv2d(2, 3, 1), nn.BatchNorm2d(3))


def test_the_decay_ramps_up_to_the_one_asked_for() -> None:
    assert warmed_decay(0.99, 0) == pytest.approx(0.1)
    assert warmed_decay(0.99, 90) == pytest.approx(91 / 100)
    assert warmed_decay(0.99, 10_000) == 0.99
    assert warmed_decay(0.5, 10) == 0.5


def test_an_update_moves_floats_by_one_minus_decay_and_copies_counters() -> None:
    torch.manual_seed(0)
    live = _net()
    average = WeightAverage(live, 0.9)
    start = {k: v.clone() for k, v in average.state_dict().items()}
    with torch.no_grad():
        for p in live.parameters():
            p.add_(1.0)
        live[1].running_mean.fill_(5.0)
        live[1].num_batches_tracked.fill_(7)
    average.updates = 1000  # past the ramp: the decay is 0.9
    average.update(live)
    after = average.state_dict()
    for name, value in live.state_dict().items():
        if value.is_floating_point():
            expected = 0.9 * start[name] + 0.1 * value
            assert torch.allclose(after[name], expected, atol=1e-6), name
        else:
            assert torch.equal(after[name], value), name
    # the live model is untouched, and the average takes no gradients
    assert float(live[1].running_mean[0]) == 5.0
    assert not any(p.requires_grad for p in average.model.parameters())
    assert average.updates == 1001


def test_the_first_update_is_mostly_the_live_weights() -> None:
    live = _net()
    average = WeightAverage(live, 0.999)
    with torch.no_grad():
        live[0].weight.fill_(1.0)
        average.model[0].weight.fill_(0.0)
    average.update(live)  # decay 0.1 on the first update
    assert torch.allclose(average.model[0].weight, torch.full_like(live[0].weight, 0.9))


@pytest.mark.parametrize("decay", [0.0, 1.0, -0.5])
def test_a_decay_outside_zero_one_is_refused(decay: float) -> None:
    with pytest.raises(ValueError, match="decay"):
        WeightAverage(_net(), decay)


def test_training_packages_the_average_not_the_last_weights(scenes, tmp_path: Path) -> None:
    torch.set_num_threads(1)
    short = {"epochs": 1, "steps_per_epoch": 4}
    out = tmp_path / "ema.geoseg"
    result = train(tiny_settings(scenes, out, ema_decay=0.5, **short))
    assert result.best_epoch == 1
    checkpoint = load_file(str(tmp_path / "ema.geoseg.ckpt" / "last.safetensors"))
    package = load_package(out)
    assert package.metadata.training["settings"]["ema_decay"] == 0.5
    weights = package.state_dict
    name = next(k for k, v in weights.items() if v.is_floating_point() and v.ndim == 4)
    assert torch.equal(weights[name], checkpoint[f"average.{name}"])
    assert not torch.equal(weights[name], checkpoint[f"model.{name}"])
    # the live weights follow the same steps as a run without the average
    plain = train(tiny_settings(scenes, tmp_path / "plain.geoseg", **short))
    assert plain.history[0].train_loss == result.history[0].train_loss
    plain_live = load_file(str(tmp_path / "plain.geoseg.ckpt" / "last.safetensors"))
    assert torch.equal(plain_live[f"model.{name}"], checkpoint[f"model.{name}"])
