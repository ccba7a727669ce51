"""Segmentation metrics from one confusion matrix, accumulated tile by tile.

Rows of the matrix are reference classes, columns predicted classes (indices into the class
list, not raster values). Pixels whose reference is nodata are never counted.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from geoseg.classes import ClassInfo


def confusion_matrix(
    reference: np.ndarray, predicted: np.ndarray, n_classes: int, ignore: np.ndarray | None = None
) -> np.ndarray:
    """(n_classes, n_classes) int64 counts of (reference, predicted) pairs of class indices.

    Pixels where ``ignore`` is True, or where either value is outside ``0..n_classes-1``
    (nodata), are skipped.
    """
    ref = reference.astype(np.int64).ravel()
    pred = predicted.astype(np.int64).ravel()
    keep = (ref >= 0) & (ref < n_classes) & (pred >= 0) & (pred < n_classes)
    if ignore is not None:
        keep &= ~ignore.ravel()
    counts = np.bincount(ref[keep] * n_classes + pred[keep], minlength=n_classes * n_classes)
    return counts.reshape(n_classes, n_classes)


@dataclass(frozen=True)
class Scores:
    """Per-class and overall scores; NaN where a class has neither reference nor prediction."""

    iou: np.ndarray
    precision: np.ndarray
    recall: np.ndarray
    f1: np.ndarray
    support: np.ndarray
    overall_accuracy: float

    @property
    def miou(self) -> float:
        """Mean IoU over classes present in the reference or the prediction."""
        return float(np.nanmean(self.iou)) if np.any(~np.isnan(self.iou)) else float("nan")

    @property
    def macro_f1(self) -> float:
        return float(np.nanmean(self.f1)) if np.any(~np.isnan(self.f1)) else float("nan")


def scores(matrix: np.ndarray) -> Scores:
    """IoU, precision, recall, F1 per class and overall accuracy from a confusion matrix."""
    m = matrix.astype(np.float64)
    tp = np.diag(m)
    ref_total = m.sum(axis=1)
    pred_total = m.sum(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        iou = tp / (ref_total + pred_total - tp)
        precision = tp / pred_total
        recall = tp / ref_total
        f1 = 2 * tp / (ref_total + pred_total)
    total = m.sum()
    return Scores(
        iou=iou,
        precision=precision,
        recall=recall,
        f1=f1,
        support=ref_total.astype(np.int64),
        overall_accuracy=float(tp.sum() / total) if total else float("nan"),
    )


def validation_metrics(
    val: Scores, classes: Sequence[ClassInfo], val_loss: float
) -> dict[str, float | dict[str, float] | dict[str, int]]:
    """The package's metrics block: overall and per-class validation scores of one epoch.

    Classes with neither reference nor predicted pixels (NaN scores) are left out.
    """
    return {
        "validation_loss": val_loss,
        "validation_miou": val.miou,
        "validation_overall_accuracy": val.overall_accuracy,
        "validation_macro_f1": val.macro_f1,
        "validation_iou": _per_class(val.iou, classes),
        "validation_f1": _per_class(val.f1, classes),
        "validation_support": {c.name: int(n) for c, n in zip(classes, val.support, strict=True)},
    }


def _per_class(values: np.ndarray, classes: Sequence[ClassInfo]) -> dict[str, float]:
    return {
        c.name: round(float(v), 6) for c, v in zip(classes, values, strict=True) if not np.isnan(v)
    }
