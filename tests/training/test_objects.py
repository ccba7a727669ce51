"""Object scores: one-to-one matches at IoU >= 0.5 between predicted and reference objects."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import shapely

from geoseg.classes import CLASS_NODATA, ClassInfo
from geoseg.errors import ConfigError
from geoseg.geo.window import PixelWindow
from geoseg.io.raster import open_scene
from geoseg.training.evaluate import score_objects
from geoseg.training.labels import LabelConfig, open_labels
from geoseg.training.objects import (
    connected_objects,
    matched_pairs,
    object_scores,
    pick_object_classes,
)
from tests.support.training import TRANSFORM, write_polygons, write_raster

CLASSES = (ClassInfo(1, "Background", "#000000"), ClassInfo(2, "Building", "#ff0000"))


def square(shape: tuple[int, int], r: int, c: int, size: int) -> np.ndarray:
    mask = np.zeros(shape, dtype=bool)
    mask[r : r + size, c : c + size] = True
    return mask


def test_a_shifted_prediction_matches_only_above_half_overlap() -> None:
    ref = connected_objects(square((40, 40), 10, 10, 10))
    near = connected_objects(square((40, 40), 10, 12, 10))  # IoU 80/120 = 0.67
    far = connected_objects(square((40, 40), 10, 15, 10))  # IoU 50/150 = 0.33
    assert matched_pairs(near, ref) == 1
    assert matched_pairs(far, ref) == 0
    assert matched_pairs(far, ref, iou_threshold=0.3) == 1


def test_one_prediction_over_two_buildings_matches_at_most_one() -> None:
    refs = square((30, 60), 5, 5, 10) | square((30, 60), 5, 16, 10)
    merged = square((30, 60), 5, 5, 21)  # one blob over both (IoU 100/210 each)
    assert connected_objects(refs).max() == 2
    scores = object_scores("Building", connected_objects(merged), connected_objects(refs))
    assert (scores.predicted, scores.reference, scores.matched) == (1, 2, 0)
    big = square((30, 60), 5, 5, 10)
    big[5:15, 15:16] = True  # 110 px: IoU 100/110 with the first, 0 with the second
    scores = object_scores("Building", connected_objects(big | False), connected_objects(refs))
    assert (scores.predicted, scores.reference, scores.matched) == (1, 2, 1)
    assert scores.precision == 1.0
    assert scores.recall == 0.5
    assert scores.f1 == pytest.approx(2 / 3)


def test_connectivity_decides_whether_diagonal_pixels_are_one_object() -> None:
    mask = np.zeros((4, 4), dtype=bool)
    mask[0, 0] = mask[1, 1] = True
    assert connected_objects(mask, 4).max() == 2
    assert connected_objects(mask, 8).max() == 1


def test_no_objects_gives_nan_not_zero_division() -> None:
    empty = np.zeros((5, 5), dtype=np.int32)
    scores = object_scores("Building", empty, empty)
    assert (scores.predicted, scores.reference, scores.matched) == (0, 0, 0)
    assert np.isnan(scores.precision) and np.isnan(scores.f1)
    assert scores.to_json()["f1"] is None


def test_object_classes_default_to_all_but_the_most_frequent() -> None:
    assert pick_object_classes(None, CLASSES, [900, 100]) == [1]
    assert pick_object_classes("Background,2", CLASSES, [900, 100]) == [0, 1]
    assert pick_object_classes("none", CLASSES, [900, 100]) == []
    with pytest.raises(ConfigError, match=r"'Roof' is not a class of the model \(1 Background"):
        pick_object_classes("Roof", CLASSES, [900, 100])


@pytest.fixture
def buildings(tmp_path: Path) -> dict[str, Path]:
    """Two touching reference buildings and a prediction finding the first one and a speck."""
    ref = np.ones((40, 60), dtype=np.uint8)
    ref[5:15, 5:15] = 2
    ref[5:15, 15:25] = 2  # touches the first: one region in the raster
    ref[30:, :] = 0  # unlabelled rows
    pred = np.ones((40, 60), dtype=np.uint8)
    pred[5:15, 5:14] = 2  # IoU 90/100 with the first polygon, 90/200 with the raster region
    pred[20:22, 40:42] = 2  # a speck: a false positive
    pred[32:36, 40:44] = 2  # under unlabelled rows: not scored
    pred[0, 0] = CLASS_NODATA
    x0, y0 = TRANSFORM.c, TRANSFORM.f
    px = TRANSFORM.a

    def box(r0: int, c0: int, r1: int, c1: int) -> shapely.Polygon:
        return shapely.box(x0 + c0 * px, y0 - r1 * px, x0 + c1 * px, y0 - r0 * px)

    return {
        "image": write_raster(tmp_path / "image.tif", np.ones((1, 40, 60), dtype=np.uint8)),
        "pred": write_raster(tmp_path / "pred.tif", pred),
        "raster": write_raster(tmp_path / "labels.tif", ref, nodata=0),
        "polygons": write_polygons(
            tmp_path / "labels.gpkg",
            [box(0, 0, 30, 60), box(5, 5, 15, 15), box(5, 15, 15, 25)],
            [1, 2, 2],
        ),
    }


@pytest.mark.parametrize(("labels", "reference", "matched"), [("raster", 1, 0), ("polygons", 2, 1)])
def test_score_objects_from_a_label_raster_or_a_polygon_layer(
    buildings: dict[str, Path], labels: str, reference: int, matched: int
) -> None:
    """Raster labels: touching buildings are one region; polygons: one object per feature."""
    config = LabelConfig(classes=CLASSES, nodata=frozenset({0}))
    reader = open_labels(buildings[labels], config, open_scene(buildings["image"]))
    try:
        (scores,) = score_objects(
            buildings["pred"], reader, PixelWindow(0, 0, 40, 60), CLASSES, picked=[1]
        )
    finally:
        reader.close()
    assert scores.name == "Building"
    assert (scores.predicted, scores.reference, scores.matched) == (2, reference, matched)
