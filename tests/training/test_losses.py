"""Losses against hand-computed values on tiny tensors; ignore_index everywhere."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from geoseg.errors import ConfigError
from geoseg.training.losses import (
    IGNORE_INDEX,
    ClassWeighting,
    CrossEntropy,
    DiceLoss,
    FocalLoss,
    LossName,
    LovaszLoss,
    build_loss,
    class_weights,
    parse_loss,
)

LN3 = math.log(3.0)


def one_pixel(logits: list[float], target: int) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.tensor(logits).view(1, -1, 1, 1), torch.tensor([[[target]]])


def test_cross_entropy_by_hand() -> None:
    # logits (0, ln 3) -> p = (1/4, 3/4)
    logits, target = one_pixel([0.0, LN3], 1)
    assert CrossEntropy()(logits, target).item() == pytest.approx(-math.log(0.75))
    logits, target = one_pixel([0.0, LN3], 0)
    assert CrossEntropy()(logits, target).item() == pytest.approx(-math.log(0.25))


def test_weighted_cross_entropy_is_a_weighted_mean() -> None:
    logits = torch.tensor([[0.0, LN3], [0.0, LN3]]).T.reshape(1, 2, 1, 2)
    target = torch.tensor([[[0, 1]]])
    loss = CrossEntropy(torch.tensor([1.0, 3.0]))(logits, target).item()
    expected = (1 * -math.log(0.25) + 3 * -math.log(0.75)) / (1 + 3)
    assert loss == pytest.approx(expected)


def test_focal_by_hand() -> None:
    logits, target = one_pixel([0.0, LN3], 1)
    # p_t = 3/4: -(1/4)^2 log(3/4)
    assert FocalLoss(2.0)(logits, target).item() == pytest.approx(-(0.25**2) * math.log(0.75))
    alpha = torch.tensor([0.9, 0.1])
    expected = -0.1 * 0.25**2 * math.log(0.75)
    assert FocalLoss(2.0, alpha)(logits, target).item() == pytest.approx(expected)


def test_focal_with_gamma_zero_equals_cross_entropy() -> None:
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 5, 7, 9, generator=gen)
    target = torch.randint(0, 5, (2, 7, 9), generator=gen)
    target[0, :3] = IGNORE_INDEX
    focal = FocalLoss(0.0)(logits, target)
    ce = F.cross_entropy(logits, target, ignore_index=IGNORE_INDEX)
    assert focal.item() == pytest.approx(ce.item(), rel=1e-6)
    assert CrossEntropy()(logits, target).item() == pytest.approx(ce.item(), rel=1e-6)


def test_focal_down_weights_easy_pixels() -> None:
    easy, target = one_pixel([0.0, 5.0], 1)
    hard, _ = one_pixel([0.0, 0.5], 1)
    ratio_focal = FocalLoss(2.0)(easy, target) / FocalLoss(2.0)(hard, target)
    ratio_ce = CrossEntropy()(easy, target) / CrossEntropy()(hard, target)
    assert ratio_focal < ratio_ce / 10


def test_dice_by_hand() -> None:
    # two pixels, two classes; p(pixel0) = (1/4, 3/4), p(pixel1) = (3/4, 1/4); targets 1, 0
    logits = torch.tensor([[0.0, LN3], [LN3, 0.0]]).T.reshape(1, 2, 1, 2)
    target = torch.tensor([[[1, 0]]])
    # per class: intersection 3/4, sum(p) = 1, sum(g) = 1 -> (2 * 3/4 + 1) / (2 + 1) = 5/6
    assert DiceLoss(smooth=1.0)(logits, target).item() == pytest.approx(1 - 5 / 6)
    assert DiceLoss(smooth=0.0)(logits, target).item() == pytest.approx(1 - 0.75)


def test_dice_averages_only_classes_in_the_target() -> None:
    logits, target = one_pixel([0.0, LN3, 0.0], 1)
    # class 1 only: p = 3/5; (2 * 3/5) / (3/5 + 1) = 6/8
    assert DiceLoss(smooth=0.0)(logits, target).item() == pytest.approx(1 - 0.75)


def brute_force_lovasz(probs: np.ndarray, labels: np.ndarray) -> float:
    """Lovász-softmax from its definition: per class, errors sorted in decreasing order times
    the increments of the Jaccard loss |M| / |{y = c} U M| of the growing mispredicted set M."""
    losses = []
    for c in range(probs.shape[1]):
        fg = labels == c
        if not fg.any():
            continue
        errors = np.abs(fg - probs[:, c])
        order = sorted(range(len(errors)), key=lambda i: -errors[i])
        truth = {i for i in range(len(fg)) if fg[i]}
        total, previous, mispredicted = 0.0, 0.0, set()
        for i in order:
            mispredicted.add(i)
            jaccard = len(mispredicted) / len(truth | mispredicted)
            total += errors[i] * (jaccard - previous)
            previous = jaccard
        losses.append(total)
    return float(np.mean(losses))


def test_lovasz_matches_its_definition() -> None:
    gen = torch.Generator().manual_seed(3)
    logits = torch.randn(2, 3, 5, 4, generator=gen)
    target = torch.randint(0, 3, (2, 5, 4), generator=gen)
    target[0, 0] = IGNORE_INDEX
    valid = target != IGNORE_INDEX
    probs = torch.softmax(logits, dim=1).permute(0, 2, 3, 1)[valid].numpy()
    expected = brute_force_lovasz(probs.astype(np.float64), target[valid].numpy())
    assert LovaszLoss()(logits, target).item() == pytest.approx(expected, rel=1e-5)


def test_lovasz_of_a_hard_prediction_is_one_minus_iou() -> None:
    # 4 x 4 pixels, class 1 a 2 x 2 square; predicted: the square shifted by one column
    target = torch.zeros(1, 4, 4, dtype=torch.long)
    target[0, 1:3, 1:3] = 1
    predicted = torch.zeros(1, 4, 4, dtype=torch.long)
    predicted[0, 1:3, 2:4] = 1
    logits = F.one_hot(predicted, 2).permute(0, 3, 1, 2).float() * 40.0
    iou_building = 2 / 6  # 2 shared pixels of 6 in the union
    iou_background = 10 / 14  # 12 reference, 12 predicted, 10 shared
    expected = 1 - (iou_building + iou_background) / 2
    assert LovaszLoss()(logits, target).item() == pytest.approx(expected, abs=1e-6)


def test_lovasz_gradient_moves_towards_the_reference() -> None:
    target = torch.tensor([[[0, 1, 1, 0]]])
    logits = torch.zeros(1, 2, 1, 4, requires_grad=True)
    LovaszLoss()(logits, target).backward()
    assert logits.grad is not None
    # raising the logit of the true class lowers the loss on every pixel
    true_class = F.one_hot(target, 2).permute(0, 3, 1, 2).bool()
    assert (logits.grad[true_class] < 0).all()


@pytest.mark.parametrize(
    "spec", ["ce", "weighted-ce", "focal", "dice", "ce+dice", "focal+dice", "lovasz", "ce+lovasz"]
)
def test_ignore_index_is_honoured_by_every_loss(spec: str) -> None:
    gen = torch.Generator().manual_seed(1)
    loss = build_loss(spec, n_classes=4, weights=[1.0, 2.0, 0.5, 4.0])
    logits = torch.randn(2, 4, 6, 6, generator=gen)
    target = torch.randint(0, 4, (2, 6, 6), generator=gen)
    target[:, :2] = IGNORE_INDEX
    base = loss(logits, target)
    changed = logits.clone()
    changed[:, :, :2] = torch.randn(2, 4, 2, 6, generator=gen) * 50  # only ignored pixels
    assert loss(changed, target).item() == pytest.approx(base.item(), rel=1e-6)
    # a batch with nothing to score: zero loss that still backpropagates
    empty = logits.clone().requires_grad_(True)
    value = loss(empty, torch.full_like(target, IGNORE_INDEX))
    value.backward()
    assert value.item() == 0.0
    assert empty.grad is not None and torch.count_nonzero(empty.grad) == 0


def test_sum_of_terms() -> None:
    gen = torch.Generator().manual_seed(2)
    logits = torch.randn(1, 3, 4, 4, generator=gen)
    target = torch.randint(0, 3, (1, 4, 4), generator=gen)
    total = build_loss("ce+dice", n_classes=3)(logits, target)
    parts = CrossEntropy()(logits, target) + DiceLoss()(logits, target)
    assert total.item() == pytest.approx(parts.item())


def test_loss_names() -> None:
    assert parse_loss("weighted-ce + dice") == (LossName.WEIGHTED_CE, LossName.DICE)
    assert parse_loss("ce+lovasz") == (LossName.CE, LossName.LOVASZ)
    with pytest.raises(ConfigError, match=r"unknown loss 'jaccard'.*focal, dice, lovasz"):
        parse_loss("ce+jaccard")
    with pytest.raises(ConfigError, match="twice"):
        parse_loss("ce+ce")
    with pytest.raises(ConfigError, match="class weights"):
        build_loss("weighted-ce", n_classes=3)
    with pytest.raises(ConfigError, match="3 values for 2 classes"):
        build_loss("focal", n_classes=2, focal_alpha=[1, 2, 3])


def test_class_weights_by_hand() -> None:
    counts = [10, 30, 60, 0]
    inverse = class_weights(counts, ClassWeighting.INVERSE)
    # N / (K * n_c) with K = 3 classes present
    assert inverse.tolist() == pytest.approx([100 / 30, 100 / 90, 100 / 180, 0.0])
    median = class_weights(counts, ClassWeighting.MEDIAN)
    # frequencies 0.1, 0.3, 0.6 -> median 0.3
    assert median.tolist() == pytest.approx([3.0, 1.0, 0.5, 0.0])
    soft = class_weights(counts, ClassWeighting.MEDIAN, power=0.5, max_weight=1.5)
    assert soft.tolist() == pytest.approx([1.5, 1.0, math.sqrt(0.5), 0.0])
    with pytest.raises(ConfigError, match="no labelled pixel"):
        class_weights(np.zeros(3))
