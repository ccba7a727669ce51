"""Confusion matrix and scores against hand-computed values."""

from __future__ import annotations

import numpy as np
import pytest

from geoseg.training.metrics import confusion_matrix, scores


def test_confusion_matrix_skips_ignored_and_nodata() -> None:
    ref = np.array([0, 0, 1, 1, 2, 255])
    pred = np.array([0, 1, 1, 1, 0, 0])
    ignore = np.array([False, False, False, True, False, False])
    m = confusion_matrix(ref, pred, 3, ignore=ignore)
    assert m.tolist() == [[1, 1, 0], [0, 1, 0], [1, 0, 0]]


def test_scores_by_hand() -> None:
    m = np.array([[3, 1], [2, 4]])
    s = scores(m)
    # class 0: tp 3, fn 1, fp 2 -> IoU 3/6, precision 3/5, recall 3/4, F1 6/9
    assert s.iou[0] == pytest.approx(0.5)
    assert s.precision[0] == pytest.approx(0.6)
    assert s.recall[0] == pytest.approx(0.75)
    assert s.f1[0] == pytest.approx(2 / 3)
    # class 1: tp 4, fn 2, fp 1 -> IoU 4/7
    assert s.iou[1] == pytest.approx(4 / 7)
    assert s.miou == pytest.approx((0.5 + 4 / 7) / 2)
    assert s.overall_accuracy == pytest.approx(0.7)
    assert s.support.tolist() == [4, 6]


def test_absent_class_is_nan_and_left_out_of_the_mean() -> None:
    m = np.array([[5, 0, 0], [0, 5, 0], [0, 0, 0]])
    s = scores(m)
    assert np.isnan(s.iou[2])
    assert s.miou == 1.0
