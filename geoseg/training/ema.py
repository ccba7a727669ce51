"""An exponential moving average of a model's weights, validated and packaged in its place.

Averaging the weights over the last few hundred optimizer steps (Polyak averaging, timm's
``ModelEmaV2``) smooths the noise of small batches: the average usually validates better
than the weights of any single step, and it varies less from one training seed to the next.
After each step every floating-point tensor of the state (parameters and batch-norm running
statistics) moves towards the live model's by ``1 - decay``; integer buffers are copied. The
decay ramps up over the first steps, ``min(decay, (1 + n) / (10 + n))`` after ``n`` updates,
so the average is not anchored to the random initialization.
"""

from __future__ import annotations

import copy

import torch
from torch import nn


def warmed_decay(decay: float, updates: int) -> float:
    """The decay of update number ``updates + 1``: ``decay`` once the ramp has passed it."""
    return min(decay, (1 + updates) / (10 + updates))


class WeightAverage:
    """A copy of ``model`` whose weights follow the trained ones with ``decay`` per step."""

    def __init__(self, model: nn.Module, decay: float):
        if not 0.0 < decay < 1.0:
            raise ValueError(f"weight-average decay must lie in (0, 1), not {decay}")
        self.decay = decay
        self.updates = 0
        self.model = copy.deepcopy(model).eval()
        for p in self.model.parameters():
            p.requires_grad_(False)

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """Move the average towards ``model``'s current weights by one step."""
        weight = 1.0 - warmed_decay(self.decay, self.updates)
        live = model.state_dict()
        for name, mine in self.model.state_dict().items():
            if mine.is_floating_point():
                mine.lerp_(live[name].to(mine.dtype), weight)
            else:
                mine.copy_(live[name])
        self.updates += 1

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The averaged weights, keyed as the model's own state dict."""
        return self.model.state_dict()

    def load(self, state: dict[str, torch.Tensor], updates: int) -> None:
        """Restore an average saved with `state_dict` after ``updates`` updates (resume)."""
        self.model.load_state_dict(state)
        self.updates = updates
