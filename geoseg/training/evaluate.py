"""Evaluation of a model package against reference labels: report table, JSON and a PNG.

`evaluate` predicts a scene window with exactly the tiled, blended prediction of `geoseg run`
(`geoseg.inference.scene.predict_scene`) into a temporary class raster, then accumulates one
confusion matrix block by block against the labels (a raster on the image grid or polygons
rasterized per block). No scene-sized array is ever held. Pixels are scored where the labels
have a class and the image has data; labels are read the way the model was trained (the
package records the label-value mapping and nodata values), unless overridden.
"""

from __future__ import annotations

import json
import math
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
import rasterio.features
import shapely

from geoseg.classes import CLASS_NODATA, ClassInfo
from geoseg.errors import ConfigError, OutputError, option
from geoseg.geo.window import PixelWindow, format_window, parse_window
from geoseg.inference.device import resolve_device
from geoseg.inference.predictor import Predictor
from geoseg.inference.scene import SceneWindow, predict_scene
from geoseg.inference.settings import predict_settings_for
from geoseg.io.raster import open_scene
from geoseg.models.package import ModelPackage, SceneFacts, check_scene, load_package
from geoseg.render.figures import SIDE_BY_SIDE_MAX_PX, write_confusion_png, write_side_by_side_png
from geoseg.training.labels import IGNORE, LabelConfig, LabelReader, open_labels
from geoseg.training.metrics import Scores, confusion_matrix, scores
from geoseg.training.objects import (
    ObjectScores,
    connected_objects,
    object_scores,
    pick_object_classes,
    reference_objects,
)
from geoseg.vectorize.api import sieve_threshold_px

REPORT_NAME = "report.json"
CONFUSION_NAME = "confusion.png"
SIDE_BY_SIDE_NAME = "side_by_side.png"


@dataclass(frozen=True)
class EvaluateSettings:
    """What to evaluate and how to predict it (tile settings default to the package's).

    ``model`` is one package or several: an ensemble averages their probabilities, as
    ``geoseg run`` does with a repeated ``--model`` (the first package's classes and labels).
    """

    model: Path | Sequence[Path]
    image: Path
    labels: Path
    window: str | None = None
    out: Path | None = None
    device: str = "auto"
    precision: str = "auto"
    tile_size: int | None = None
    overlap: int | None = None
    batch_size: int | None = None
    tta: bool = False
    label_map: dict[int, int] | None = None
    label_nodata: Sequence[int] | None = None
    class_column: str | None = None
    preview_window: str | None = None
    """Window of the side-by-side PNG (default: centred, at most 1024 px a side)."""
    object_classes: str | None = None
    """Classes scored as objects (names/ids, ``none``); default: all but the most frequent."""
    connectivity: int = 4
    """Pixel neighbours that join a predicted object (as `geoseg run --connectivity`)."""
    min_area: float = 0.0
    """m²: predicted regions smaller than this are merged into their largest neighbour before
    scoring, as ``geoseg run --min-area`` does before polygonizing (0: scored as predicted)."""

    def __post_init__(self) -> None:
        if not math.isfinite(self.min_area) or self.min_area < 0:
            raise ConfigError(
                f"{option('min_area')}: {self.min_area} must be a finite number >= 0 (m²)"
            )

    @property
    def model_paths(self) -> tuple[Path, ...]:
        """The package paths, one for a single model."""
        return (Path(self.model),) if isinstance(self.model, str | Path) else tuple(self.model)


@dataclass(frozen=True)
class EvaluationReport:
    """The confusion matrix, its scores and where the report files went."""

    classes: tuple[ClassInfo, ...]
    matrix: np.ndarray
    scores: Scores
    window: PixelWindow
    scored_px: int
    seconds: float
    files: dict[str, Path] = field(default_factory=dict)
    objects: tuple[ObjectScores, ...] = ()

    def to_json(
        self, settings: EvaluateSettings, packages: Sequence[ModelPackage]
    ) -> dict[str, Any]:
        s, package = self.scores, packages[0]
        return {
            "model": {"path": str(package.path), "name": package.metadata.name},
            "model_sha256": package.sha256,
            "ensemble": [
                {"path": str(p.path), "name": p.metadata.name, "sha256": p.sha256} for p in packages
            ],
            "image": str(settings.image),
            "labels": str(settings.labels),
            "window": format_window(self.window),
            "tta": settings.tta,
            "min_area_m2": settings.min_area,
            "scored_pixels": self.scored_px,
            "overall_accuracy": s.overall_accuracy,
            "miou": s.miou,
            "macro_f1": s.macro_f1,
            "classes": [
                {
                    "id": c.id,
                    "name": c.name,
                    "iou": _number(s.iou[i]),
                    "precision": _number(s.precision[i]),
                    "recall": _number(s.recall[i]),
                    "f1": _number(s.f1[i]),
                    "support": int(s.support[i]),
                }
                for i, c in enumerate(self.classes)
            ],
            "confusion_matrix": {
                "rows": "reference",
                "columns": "predicted",
                "classes": [c.name for c in self.classes],
                "counts": self.matrix.tolist(),
            },
            "objects": [o.to_json() for o in self.objects],
            "seconds": round(self.seconds, 2),
        }


def _number(value: float) -> float | None:
    return None if np.isnan(value) else float(value)


def package_label_config(
    package: ModelPackage,
    *,
    label_map: dict[int, int] | None = None,
    label_nodata: Sequence[int] | None = None,
    class_column: str | None = None,
) -> LabelConfig:
    """How to read reference labels for a package: as it was trained, unless overridden."""
    stored = package.metadata.training.get("labels", {})
    if not isinstance(stored, dict):  # packages from before the label config was recorded
        stored = {}  # (e.g. the shipped demo model) list only the label files' names
    if label_map is None:
        label_map = {int(k): int(v) for k, v in stored.get("label_map", {}).items()}
    if label_nodata is None:
        label_nodata = stored.get("label_nodata", [CLASS_NODATA])
    return LabelConfig(
        classes=package.metadata.class_infos(),
        value_map=label_map,
        nodata=frozenset(int(v) for v in label_nodata),
        class_column=class_column or stored.get("class_column", "class"),
    )


def evaluate(
    settings: EvaluateSettings, on_tiles: Callable[[int], None] | None = None
) -> EvaluationReport:
    """Predict the window, score it against the labels, write report.json + confusion.png."""
    t0 = time.perf_counter()
    packages = [load_package(path) for path in settings.model_paths]
    package = packages[0]
    scene = open_scene(settings.image)
    check_scene(package, SceneFacts(scene.path, scene.band_count, scene.dtypes, scene.grid.gsd_m))
    window = parse_window(settings.window, scene.grid.shape)
    labels_config = package_label_config(
        package,
        label_map=settings.label_map,
        label_nodata=settings.label_nodata,
        class_column=settings.class_column,
    )
    labels = open_labels(settings.labels, labels_config, scene)
    shown = preview_window(settings.preview_window, window, scene.grid.shape)
    if settings.out is not None:
        _prepare(settings.out)
    predict = predict_settings_for(
        package,
        tile_size=settings.tile_size,
        overlap=settings.overlap,
        batch_size=settings.batch_size,
    )
    predictor = Predictor(
        packages,
        resolve_device(settings.device),
        tta=settings.tta,
        precision=settings.precision,
    )
    target = SceneWindow(scene, window, shapely.box(*scene.grid.window_bounds(window)))
    classes = package.metadata.class_infos()
    try:
        with tempfile.TemporaryDirectory(prefix="geoseg-evaluate-") as tmp:
            classes_path = Path(tmp) / "classes.tif"
            predict_scene(
                target,
                predictor,
                predict,
                classes_path=classes_path,
                confidence_path=Path(tmp) / "confidence.tif",
                on_tiles=on_tiles,
            )
            if settings.min_area > 0:
                sieve_class_raster(
                    classes_path,
                    sieve_threshold_px(settings.min_area, scene.grid.pixel_area_m2),
                    settings.connectivity,
                )
            matrix = score_class_raster(classes_path, labels, window, [c.id for c in classes])
            picked = pick_object_classes(settings.object_classes, classes, matrix.sum(axis=1))
            objects = score_objects(
                classes_path,
                labels,
                window,
                classes,
                picked=picked,
                connectivity=settings.connectivity,
            )
            side_by_side = None
            if settings.out is not None:
                side_by_side = write_side_by_side_png(
                    read_window_of(classes_path, shown, origin=window),
                    labels.read(shown),
                    classes,
                    settings.out / SIDE_BY_SIDE_NAME,
                    title=f"{settings.image.name} {format_window(shown)}",
                )
    finally:
        labels.close()
    result = EvaluationReport(
        classes=classes,
        matrix=matrix,
        scores=scores(matrix),
        window=window,
        scored_px=int(matrix.sum()),
        seconds=time.perf_counter() - t0,
        objects=objects,
    )
    if settings.out is None:
        return result
    return _write_report(result, settings, packages, settings.out, side_by_side)


def _write_report(
    result: EvaluationReport,
    settings: EvaluateSettings,
    packages: Sequence[ModelPackage],
    out: Path,
    side_by_side: Path | None,
) -> EvaluationReport:
    """report.json and confusion.png in ``out``; the report with all its files."""
    report_path = out / REPORT_NAME
    report_path.write_text(json.dumps(result.to_json(settings, packages), indent=2) + "\n")
    s = result.scores
    caption = (
        f"overall accuracy {s.overall_accuracy:.3f}   mIoU {s.miou:.3f}   macro-F1 {s.macro_f1:.3f}"
    )
    png = write_confusion_png(result.matrix, result.classes, out / CONFUSION_NAME, caption=caption)
    files = {"report": report_path, "png": png}
    if side_by_side is not None:
        files["compare"] = side_by_side
    return replace(result, files=files)


def preview_window(text: str | None, evaluated: PixelWindow, shape: tuple[int, int]) -> PixelWindow:
    """The side-by-side window: ``text`` (scene pixels, inside the evaluated window) or the
    centred part of the evaluated window of at most `SIDE_BY_SIDE_MAX_PX` a side."""
    if text is not None:
        window = parse_window(text, shape, setting="preview_window")
        if evaluated.intersection(window) != window:
            raise ConfigError(
                f"{option('preview_window')} {text!r} ({format_window(window)}) is not inside the "
                f"evaluated window {format_window(evaluated)}; pick pixels that are scored"
            )
        return window
    height = min(evaluated.height, SIDE_BY_SIDE_MAX_PX)
    width = min(evaluated.width, SIDE_BY_SIDE_MAX_PX)
    return PixelWindow(
        evaluated.row_off + (evaluated.height - height) // 2,
        evaluated.col_off + (evaluated.width - width) // 2,
        height,
        width,
    )


def read_window_of(raster: Path, window: PixelWindow, *, origin: PixelWindow) -> np.ndarray:
    """Band 1 of a raster that covers ``origin`` (scene pixels), over ``window`` (scene pixels)."""
    shifted = PixelWindow(
        window.row_off - origin.row_off, window.col_off - origin.col_off, *window.shape
    )
    with rasterio.open(raster) as ds:
        return ds.read(1, window=shifted.to_rasterio())


def sieve_class_raster(classes_path: Path, threshold_px: int, connectivity: int) -> None:
    """Merge the raster's regions under ``threshold_px`` pixels into their largest neighbour,
    in place: GDAL's sieve, as `geoseg run --min-area` applies it (exact across its blocks)
    before polygonizing; nodata takes no part. Holds the window's classes in memory once."""
    if threshold_px < 2:
        return
    with rasterio.open(classes_path, "r+") as ds:
        classes = ds.read(1)
        sieved = rasterio.features.sieve(
            classes, threshold_px, mask=classes != CLASS_NODATA, connectivity=connectivity
        )
        ds.write(sieved, 1)


def score_class_raster(
    classes_path: Path, labels: LabelReader, window: PixelWindow, class_ids: Sequence[int]
) -> np.ndarray:
    """Confusion matrix of a class raster covering ``window`` against a label reader.

    Read block by block; pixels that are unlabelled or not classified (nodata) are skipped.
    """
    lut = np.full(256, -1, dtype=np.int64)
    lut[list(class_ids)] = np.arange(len(class_ids))
    n = len(class_ids)
    matrix = np.zeros((n, n), dtype=np.int64)
    with rasterio.open(classes_path) as ds:
        for _, block in ds.block_windows(1):
            pred = ds.read(1, window=block)
            part = PixelWindow(
                window.row_off + int(block.row_off),
                window.col_off + int(block.col_off),
                int(block.height),
                int(block.width),
            )
            ref = labels.read(part)
            ignore = (pred == CLASS_NODATA) | (ref == IGNORE)
            matrix += confusion_matrix(ref, lut[pred], n, ignore=ignore)
    return matrix


def score_objects(
    classes_path: Path,
    labels: LabelReader,
    window: PixelWindow,
    classes: Sequence[ClassInfo],
    *,
    picked: Sequence[int],
    connectivity: int = 4,
) -> tuple[ObjectScores, ...]:
    """Object precision/recall/F1 of the picked class indices (see `geoseg.training.objects`);
    only pixels that are scored (labelled and predicted) take part."""
    if not picked:
        return ()
    with rasterio.open(classes_path) as ds:
        pred = ds.read(1)
    scored = (pred != CLASS_NODATA) & (labels.read(window) != IGNORE)
    found = []
    for index in picked:
        mine = connected_objects((pred == classes[index].id) & scored, connectivity)
        theirs = reference_objects(labels, window, index, scored, connectivity)
        found.append(object_scores(classes[index].name, mine, theirs))
    return tuple(found)


def _prepare(out: Path) -> None:
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(
            f"{out}: cannot create the report folder ({exc.strerror or exc}); "
            "pass a writable folder with --out"
        ) from None
