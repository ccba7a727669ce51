"""Object-level scores: predicted objects matched one to one with reference objects at IoU ≥ 0.5.

Users who map buildings count buildings, and pixel IoU hides whether a model finds each one.
For a class, the predicted objects are the connected regions of that class in the class raster
(what `geoseg run` writes as one polygon each, with the same connectivity); the reference
objects are the features of a label polygon layer or, for a label raster, its connected
regions (touching buildings in a raster are one object there). A prediction and a reference
object match when their intersection over union is at least the threshold; each object takes
part in at most one match (greedy, highest IoU first; above 0.5 a match is unique anyway).
Only scored pixels count: reference nodata and unpredicted pixels are removed from both sides.

The window's object maps are held in memory (int32 per pixel, one class at a time): an
evaluation window of 10 000 × 10 000 px needs about 0.8 GB here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import ndimage

from geoseg.classes import ClassInfo
from geoseg.errors import ConfigError, option

MATCH_IOU = 0.5
"""The usual object-detection threshold (a match above it is one to one)."""


@dataclass(frozen=True)
class ObjectScores:
    """Object counts and scores of one class at one IoU threshold."""

    name: str
    predicted: int
    reference: int
    matched: int
    iou_threshold: float = MATCH_IOU

    @property
    def precision(self) -> float:
        return self.matched / self.predicted if self.predicted else float("nan")

    @property
    def recall(self) -> float:
        return self.matched / self.reference if self.reference else float("nan")

    @property
    def f1(self) -> float:
        total = self.predicted + self.reference
        return 2 * self.matched / total if total else float("nan")

    def to_json(self) -> dict[str, Any]:
        def number(v: float) -> float | None:
            return None if np.isnan(v) else round(float(v), 6)

        return {
            "class": self.name,
            "iou_threshold": self.iou_threshold,
            "predicted_objects": self.predicted,
            "reference_objects": self.reference,
            "matched": self.matched,
            "precision": number(self.precision),
            "recall": number(self.recall),
            "f1": number(self.f1),
        }


def structure(connectivity: int) -> np.ndarray:
    """The scipy.ndimage structuring element of 4- or 8-connectivity."""
    return ndimage.generate_binary_structure(2, 1 if connectivity == 4 else 2)


def connected_objects(mask: np.ndarray, connectivity: int = 4) -> np.ndarray:
    """int32 map of the connected regions of ``mask`` (0 outside, 1..n inside)."""
    labelled, _ = ndimage.label(mask, structure=structure(connectivity))
    return labelled.astype(np.int32, copy=False)


def matched_pairs(
    predicted: np.ndarray, reference: np.ndarray, iou_threshold: float = MATCH_IOU
) -> int:
    """How many predicted objects match a reference object one to one at ``iou_threshold``.

    ``predicted`` and ``reference`` are object maps of one shape (0: no object). IoU of a pair =
    shared pixels / (pixels of one + pixels of the other - shared pixels).
    """
    both = (predicted > 0) & (reference > 0)
    if not both.any():
        return 0
    p_area = np.bincount(predicted.ravel())
    r_area = np.bincount(reference.ravel())
    pairs = predicted[both].astype(np.int64) * (int(reference.max()) + 1) + reference[both]
    keys, shared = np.unique(pairs, return_counts=True)
    p_ids, r_ids = np.divmod(keys, int(reference.max()) + 1)
    iou = shared / (p_area[p_ids] + r_area[r_ids] - shared)
    order = np.argsort(-iou, kind="stable")
    used_p: set[int] = set()
    used_r: set[int] = set()
    for k in order:
        if iou[k] < iou_threshold:
            break
        p, r = int(p_ids[k]), int(r_ids[k])
        if p in used_p or r in used_r:
            continue
        used_p.add(p)
        used_r.add(r)
    return len(used_p)


def object_scores(
    name: str,
    predicted: np.ndarray,
    reference: np.ndarray,
    iou_threshold: float = MATCH_IOU,
) -> ObjectScores:
    """Scores of one class from its predicted and reference object maps (0: no object)."""
    return ObjectScores(
        name=name,
        predicted=int(np.count_nonzero(np.bincount(predicted.ravel())[1:])),
        reference=int(np.count_nonzero(np.bincount(reference.ravel())[1:])),
        matched=matched_pairs(predicted, reference, iou_threshold),
        iou_threshold=iou_threshold,
    )


def default_object_classes(classes: Sequence[ClassInfo], support: Sequence[int]) -> list[int]:
    """Class indices scored as objects by default: all but the most frequent reference class
    (the background a building or field layer sits in)."""
    if len(classes) < 2:
        return list(range(len(classes)))
    largest = int(np.argmax(support))
    return [i for i in range(len(classes)) if i != largest]


def pick_object_classes(
    text: str | None, classes: Sequence[ClassInfo], support: Sequence[int]
) -> list[int]:
    """Class indices from ``--object-classes`` (names or ids, comma-separated; ``none``; None:
    the default). An unknown name is refused with the class list."""
    if text is None or text.strip() == "auto":
        return default_object_classes(classes, support)
    if text.strip().casefold() == "none":
        return []
    by_key = {c.name.casefold(): i for i, c in enumerate(classes)}
    by_key.update({str(c.id): i for i, c in enumerate(classes)})
    picked = []
    for part in (p.strip() for p in text.split(",") if p.strip()):
        if part.casefold() not in by_key:
            names = ", ".join(f"{c.id} {c.name}" for c in classes)
            raise ConfigError(
                f"{option('object_classes')} {part!r} is not a class of the model ({names}); "
                "give class names or ids, or none"
            )
        picked.append(by_key[part.casefold()])
    return sorted(set(picked))


def reference_objects(
    labels: Any, window: Any, index: int, scored: np.ndarray, connectivity: int = 4
) -> np.ndarray:
    """Reference object map of class ``index`` over ``window``: the label layer's features
    where it has them (`PolygonLabels.object_map`), else the label raster's connected regions;
    0 outside the scored pixels."""
    if hasattr(labels, "object_map"):
        objects = labels.object_map(window, index)
        objects[~scored] = 0
        return objects
    return connected_objects((labels.read(window) == index) & scored, connectivity)
