"""Segmentation losses chosen by name: cross-entropy, class-weighted CE, focal, dice, Lovász
and sums.

A loss spec is a ``+``-joined list of `LossName` values, e.g. ``ce``, ``weighted-ce``,
``focal``, ``ce+dice`` or ``ce+lovasz``; `build_loss` turns it into one module that sums the
terms. Every term ignores pixels whose target is ``ignore_index`` (nodata): they add nothing
to the loss and nothing to its normalization.

Class weights come from label frequencies (`class_weights`): inverse frequency
(``total / (K * n_c)``) or median-frequency balancing (Eigen & Fergus: ``median(f) / f_c``).
The counts are streamed over the training blocks by `geoseg.training.data.TrainingData`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from enum import StrEnum

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from geoseg.classes import CLASS_NODATA
from geoseg.errors import ConfigError, option

IGNORE_INDEX = CLASS_NODATA
"""Target value of pixels that are not scored (nodata, unlabelled, held out)."""


class LossName(StrEnum):
    """One loss term; terms are summed with ``+`` in a loss spec."""

    CE = "ce"
    WEIGHTED_CE = "weighted-ce"
    FOCAL = "focal"
    DICE = "dice"
    LOVASZ = "lovasz"


class ClassWeighting(StrEnum):
    """How class weights are derived from label frequencies."""

    INVERSE = "inverse"
    MEDIAN = "median"


def parse_loss(spec: str) -> tuple[LossName, ...]:
    """``"ce+dice"`` -> (CE, DICE); unknown names fail listing the valid ones."""
    terms = []
    for part in spec.replace(" ", "").split("+"):
        try:
            terms.append(LossName(part))
        except ValueError:
            valid = ", ".join(n.value for n in LossName)
            raise ConfigError(
                f"{option('loss')} {spec!r}: unknown loss {part!r}; use one of {valid} or a sum "
                "like ce+dice"
            ) from None
    if len(set(terms)) != len(terms):
        raise ConfigError(f"{option('loss')} {spec!r}: a term appears twice")
    return tuple(terms)


def needs_class_weights(spec: str) -> bool:
    """Whether the loss uses class weights computed from label frequencies."""
    return LossName.WEIGHTED_CE in parse_loss(spec)


def class_weights(
    counts: Sequence[int] | np.ndarray,
    method: ClassWeighting = ClassWeighting.MEDIAN,
    *,
    power: float = 1.0,
    max_weight: float | None = None,
) -> np.ndarray:
    """Per-class weights from pixel counts (classes absent from the labels get weight 0).

    - inverse: ``w_c = N / (K * n_c)`` (1 for every class when balanced),
    - median: ``w_c = median_k(f_k) / f_c`` over the K classes present, ``f = n / N``.

    ``power`` < 1 softens the weights (0.5: square root), ``max_weight`` clips them: with a
    class at 0.1 % of the pixels raw weights span three orders of magnitude.
    """
    n = np.asarray(counts, dtype=np.float64)
    present = n > 0
    if not present.any():
        raise ConfigError("cannot compute class weights: the labels hold no labelled pixel")
    freq = n / n.sum()
    weights = np.zeros_like(freq)
    if method == ClassWeighting.INVERSE:
        weights[present] = 1.0 / (present.sum() * freq[present])
    else:
        weights[present] = np.median(freq[present]) / freq[present]
    weights[present] **= power
    if max_weight is not None:
        weights = np.minimum(weights, max_weight)
    return weights


class CrossEntropy(nn.Module):
    """(Weighted) cross-entropy; with weights the mean is over the weights, as in PyTorch."""

    def __init__(self, weight: torch.Tensor | None = None, ignore_index: int = IGNORE_INDEX):
        super().__init__()
        self.register_buffer("weight", weight)
        self.ignore_index = ignore_index

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return _zero_if_empty(
            logits,
            target,
            self.ignore_index,
            lambda: F.cross_entropy(
                logits.float(), target, weight=self.weight, ignore_index=self.ignore_index
            ),
        )


class FocalLoss(nn.Module):
    """Focal loss ``-alpha_t (1 - p_t)^gamma log p_t`` (Lin et al.), mean over valid pixels.

    With ``gamma=0`` and no ``alpha`` it equals cross-entropy. ``alpha`` is an optional
    per-class weight; unlike weighted CE the mean stays over pixels, as in the paper.
    """

    def __init__(
        self,
        gamma: float = 2.0,
        alpha: torch.Tensor | None = None,
        ignore_index: int = IGNORE_INDEX,
    ):
        super().__init__()
        if gamma < 0:
            raise ConfigError(f"focal gamma must be >= 0, got {gamma}")
        self.gamma = gamma
        self.register_buffer("alpha", alpha)
        self.ignore_index = ignore_index

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        valid = target != self.ignore_index
        if not valid.any():
            return logits.sum() * 0.0
        logp = F.log_softmax(logits.float(), dim=1)
        safe = torch.where(valid, target, 0)
        logp_t = logp.gather(1, safe.unsqueeze(1)).squeeze(1)
        loss = -((1 - logp_t.exp()).clamp(min=0) ** self.gamma) * logp_t
        if self.alpha is not None:
            loss = loss * self.alpha[safe]
        return loss[valid].mean()


class DiceLoss(nn.Module):
    """Soft dice ``1 - mean_c (2 sum(p g) + s) / (sum(p) + sum(g) + s)`` over the batch.

    Classes absent from both the target and (essentially) the prediction would score a
    meaningless 1; the mean is over classes present in the target.
    """

    def __init__(self, smooth: float = 1.0, ignore_index: int = IGNORE_INDEX):
        super().__init__()
        self.smooth = smooth
        self.ignore_index = ignore_index

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        valid = (target != self.ignore_index).unsqueeze(1)
        if not valid.any():
            return logits.sum() * 0.0
        n_classes = logits.shape[1]
        probs = torch.softmax(logits.float(), dim=1) * valid
        safe = torch.where(valid.squeeze(1), target, 0)
        onehot = F.one_hot(safe, n_classes).permute(0, 3, 1, 2).float() * valid
        dims = (0, 2, 3)
        intersection = (probs * onehot).sum(dims)
        denominator = probs.sum(dims) + onehot.sum(dims)
        dice = (2 * intersection + self.smooth) / (denominator + self.smooth)
        present = onehot.sum(dims) > 0
        return 1 - dice[present].mean()


class LovaszLoss(nn.Module):
    """Lovász-softmax (Berman et al. 2018): a convex surrogate of ``1 - IoU``, mean over the
    classes present in the target, computed over the whole batch.

    Per class the pixel errors ``|[y = c] - p_c|`` are sorted in decreasing order and weighted
    by the increments of the Jaccard loss along that order (its Lovász extension); on one-hot
    predictions it equals ``1 - IoU`` exactly, so it optimizes the metric that is reported.
    """

    def __init__(self, ignore_index: int = IGNORE_INDEX):
        super().__init__()
        self.ignore_index = ignore_index

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return _zero_if_empty(logits, target, self.ignore_index, lambda: self._loss(logits, target))

    def _loss(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        valid = target != self.ignore_index
        probs = torch.softmax(logits.float(), dim=1).permute(0, 2, 3, 1)[valid]  # (N, C)
        labels = target[valid]
        present = torch.bincount(labels, minlength=probs.shape[1]).tolist()  # one host sync
        losses = []
        for c, count in enumerate(present[: probs.shape[1]]):
            if count == 0:
                continue
            fg = (labels == c).float()
            errors, order = torch.sort((fg - probs[:, c]).abs(), descending=True)
            losses.append(torch.dot(errors, jaccard_increments(fg[order])))
        return torch.stack(losses).mean()


def jaccard_increments(fg_sorted: torch.Tensor) -> torch.Tensor:
    """Gradient of the Lovász extension of the Jaccard loss at the given pixel order.

    With ``k`` pixels taken in order, ``J_k = 1 - (G - cumfg_k) / (G + cumbg_k)`` (G the
    foreground count) is the Jaccard loss of predicting those ``k`` wrong; the weights are
    ``J_1, J_2 - J_1, ...``.
    """
    total = fg_sorted.sum()
    intersection = total - fg_sorted.cumsum(0)
    union = total + (1.0 - fg_sorted).cumsum(0)
    jaccard = 1.0 - intersection / union
    return torch.cat([jaccard[:1], jaccard[1:] - jaccard[:-1]])


class SumLoss(nn.Module):
    """The sum of several loss terms."""

    def __init__(self, terms: Sequence[nn.Module]):
        super().__init__()
        self.terms = nn.ModuleList(terms)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        total = self.terms[0](logits, target)
        for term in self.terms[1:]:
            total = total + term(logits, target)
        return total


def build_loss(
    spec: str,
    *,
    n_classes: int,
    weights: Sequence[float] | None = None,
    focal_gamma: float = 2.0,
    focal_alpha: Sequence[float] | None = None,
    ignore_index: int = IGNORE_INDEX,
) -> nn.Module:
    """The loss named by ``spec`` (e.g. ``"weighted-ce+dice"``) as one module.

    ``weights`` (one per class) are required by ``weighted-ce``; ``focal_alpha`` is optional.
    """
    terms: list[nn.Module] = []
    for name in parse_loss(spec):
        if name == LossName.CE:
            terms.append(CrossEntropy(ignore_index=ignore_index))
        elif name == LossName.WEIGHTED_CE:
            if weights is None:
                raise ConfigError("weighted-ce needs class weights (computed from the labels)")
            terms.append(CrossEntropy(_per_class(weights, n_classes, "weights"), ignore_index))
        elif name == LossName.FOCAL:
            alpha = None if focal_alpha is None else _per_class(focal_alpha, n_classes, "alpha")
            terms.append(FocalLoss(focal_gamma, alpha, ignore_index))
        elif name == LossName.LOVASZ:
            terms.append(LovaszLoss(ignore_index=ignore_index))
        else:
            terms.append(DiceLoss(ignore_index=ignore_index))
    return terms[0] if len(terms) == 1 else SumLoss(terms)


def _per_class(values: Sequence[float], n_classes: int, what: str) -> torch.Tensor:
    if len(values) != n_classes:
        raise ConfigError(f"focal/class {what}: {len(values)} values for {n_classes} classes")
    return torch.tensor([float(v) for v in values], dtype=torch.float32)


def _zero_if_empty(
    logits: torch.Tensor,
    target: torch.Tensor,
    ignore_index: int,
    loss: Callable[[], torch.Tensor],
) -> torch.Tensor:
    """A zero loss (with a graph) for a batch without a single valid pixel, else ``loss()``."""
    if not (target != ignore_index).any():
        return logits.sum() * 0.0
    return loss()
