"""Fold eval-mode batch norms into the convolutions before them, for inference only.

In eval mode a ``BatchNorm2d`` is a fixed per-channel affine map, so a ``Conv2d`` directly
followed by one computes ``s * (W * x + b - mean) + beta`` with ``s = gamma / sqrt(var + eps)``:
the same as one convolution with weights ``s * W`` and bias ``s * (b - mean) + beta``. Folding
drops a full pass over every such activation (14 % of the demo U-Net's CPU forward, mostly its
full-resolution decoder). The folded weights are computed in float64 and rounded once, so the
outputs differ from the unfolded network by float32 rounding only (~1e-6 relative).

Only pairs whose dataflow is certain are folded. By structure: consecutive children of an
``nn.Sequential`` (smp's ``Conv2dReLU``, geoseg's own blocks), the ``BatchNorm2d`` of exactly
that type with running statistics, neither module used anywhere else in the network. By
tracing, when a ``probe`` input is given: a batch norm whose input is the very tensor a
convolution returned, each called once in a forward pass (timm encoders keep their pairs as
named attributes, ``conv_dw`` then ``bn1``, with timm's ``BatchNormAct2d``: a batch norm, then
dropout, then an activation, which stay). Traced folds are checked on the probe: if the
network's output moves by more than float rounding, they are all undone.
"""

from __future__ import annotations

import itertools
from collections import Counter
from dataclasses import dataclass

import torch
from torch import nn


def fold_batch_norms(model: nn.Module, probe: torch.Tensor | None = None) -> int:
    """Fold every foldable Conv2d → batch norm pair of ``model`` in place; how many were folded.

    The model must be in eval mode (the batch norms use their running statistics); a folded
    batch norm is replaced by ``nn.Identity`` (timm's ``BatchNormAct2d`` by its activation), so
    the module tree keeps its names. ``probe``: a small input batch for the traced pairs (see
    the module doc); None folds the structural pairs only.
    """
    if model.training:
        raise ValueError("fold_batch_norms needs a model in eval mode")
    # a module used in more than one place (tied weights) is left alone: folding it for one
    # place would change it in the others
    uses = Counter(id(m) for _, m in model.named_modules(remove_duplicate=False))
    folded = 0
    for module in model.modules():
        if not isinstance(module, nn.Sequential):
            continue
        names = list(module._modules)
        for first, second in itertools.pairwise(names):
            conv, norm = module._modules[first], module._modules[second]
            if _foldable(conv, norm) and uses[id(conv)] == uses[id(norm)] == 1:
                _fold_into(conv, norm)  # type: ignore[arg-type]
                module._modules[second] = nn.Identity()
                folded += 1
    if probe is not None:
        folded += _fold_traced(model, probe, uses)
    return folded


def _fold_traced(model: nn.Module, probe: torch.Tensor, uses: Counter[int]) -> int:
    """Fold the pairs `_traced_pairs` finds, keep them only if the probe's output holds.

    A model that cannot run the probe (too small for its pooling pyramid, say) keeps its
    structural folds only.
    """
    try:
        want, found = _traced_pairs(model, probe)
    except RuntimeError:
        return 0
    pairs = [(conv, slot) for conv, slot in found if uses[id(conv)] == uses[id(slot.norm)] == 1]
    if not pairs:
        return 0
    saved = [(conv.weight.detach().clone(), _copy_or_none(conv.bias)) for conv, _ in pairs]
    for conv, slot in pairs:
        _fold_into(conv, slot.norm)  # type: ignore[arg-type]
        slot.replace(_after_norm(slot.norm))
    with torch.inference_mode():
        got = model(probe)
    if torch.allclose(got, want, rtol=1e-3, atol=1e-4 * float(want.abs().max()) + 1e-6):
        return len(pairs)
    # some pair's dataflow was not what the trace showed: undo all (a conv without a bias
    # got one from `_fold_into`: it goes again)
    for (weight, bias), (conv, slot) in zip(saved, pairs, strict=True):
        with torch.no_grad():
            conv.weight.copy_(weight)
            if bias is None:
                conv.bias = None
            else:
                conv.bias.copy_(bias)  # type: ignore[union-attr]
        slot.replace(slot.norm)
    return 0


def _copy_or_none(tensor: torch.Tensor | None) -> torch.Tensor | None:
    return None if tensor is None else tensor.detach().clone()


@dataclass(frozen=True)
class _Slot:
    """Where a batch norm hangs in the tree (parent and attribute), to swap it for another."""

    parent: nn.Module
    name: str
    norm: nn.Module

    def replace(self, module: nn.Module) -> None:
        self.parent._modules[self.name] = module


def _traced_pairs(
    model: nn.Module, probe: torch.Tensor
) -> tuple[torch.Tensor, list[tuple[nn.Conv2d, _Slot]]]:
    """The probe's output, and (conv, slot of its batch norm) where that forward fed the
    conv's output straight into the norm, each module called exactly once."""
    kinds = _norm_kinds()
    slots = {
        id(child): _Slot(parent, name, child)
        for parent in model.modules()
        for name, child in parent._modules.items()
        if type(child) in kinds
    }
    outputs: dict[int, tuple[nn.Module, torch.Tensor]] = {}
    inputs: dict[int, torch.Tensor] = {}
    calls: Counter[int] = Counter()

    def conv_hook(module: nn.Module, _args: tuple, out: torch.Tensor) -> None:
        calls[id(module)] += 1
        outputs[id(out)] = (module, out)  # the tensor is kept, so its id is not reused

    def norm_hook(module: nn.Module, args: tuple) -> None:
        calls[id(module)] += 1
        inputs[id(module)] = args[0]

    handles = [m.register_forward_hook(conv_hook) for m in model.modules() if type(m) is nn.Conv2d]
    handles += [m.register_forward_pre_hook(norm_hook) for m in model.modules() if id(m) in slots]
    try:
        with torch.inference_mode():
            output = model(probe)
    finally:
        for handle in handles:
            handle.remove()
    pairs = []
    for norm_id, x in inputs.items():
        conv, _ = outputs.get(id(x), (None, None))
        slot = slots[norm_id]
        once = conv is not None and calls[id(conv)] == calls[norm_id] == 1
        if once and _foldable(conv, slot.norm, kinds):
            pairs.append((conv, slot))
    return output, pairs


def _norm_kinds() -> tuple[type, ...]:
    """The batch norms a trace may fold: torch's, and timm's ``BatchNormAct2d`` (batch norm,
    dropout, activation) when timm is installed."""
    try:
        from timm.layers.norm_act import BatchNormAct2d
    except ImportError:
        return (nn.BatchNorm2d,)
    return (nn.BatchNorm2d, BatchNormAct2d)


def _after_norm(norm: nn.Module) -> nn.Module:
    """What is left of a folded norm: nothing, or timm's dropout (a no-op in eval) + act."""
    if type(norm) is nn.BatchNorm2d:
        return nn.Identity()
    return nn.Sequential(norm.drop, norm.act)  # type: ignore[arg-type]


def _foldable(
    conv: nn.Module | None,
    norm: nn.Module | None,
    kinds: tuple[type, ...] = (nn.BatchNorm2d,),
) -> bool:
    return (
        type(conv) is nn.Conv2d
        and type(norm) in kinds
        and norm.track_running_stats
        and norm.running_mean is not None
        and norm.running_var is not None
        and norm.num_features == conv.out_channels
    )


@torch.no_grad()
def _fold_into(conv: nn.Conv2d, norm: nn.BatchNorm2d) -> None:
    """Give ``conv`` the weights and bias of ``norm(conv(x))`` (computed in float64)."""
    dtype = conv.weight.dtype
    var = norm.running_var.double()  # type: ignore[union-attr]
    mean = norm.running_mean.double()  # type: ignore[union-attr]
    gamma = norm.weight.double() if norm.weight is not None else torch.ones_like(var)
    beta = norm.bias.double() if norm.bias is not None else torch.zeros_like(var)
    scale = gamma / torch.sqrt(var + norm.eps)
    bias = conv.bias.double() if conv.bias is not None else torch.zeros_like(var)
    weight = conv.weight.double() * scale.reshape(-1, 1, 1, 1)
    conv.weight.copy_(weight.to(dtype))
    new_bias = ((bias - mean) * scale + beta).to(dtype)
    if conv.bias is None:
        conv.bias = nn.Parameter(new_bias, requires_grad=False)
    else:
        conv.bias.copy_(new_bias)
