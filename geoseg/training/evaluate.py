"""Evaluation of a model package against reference labels: report table, JSON and a PNG.

`evaluate` predicts a scene window with exactly the tiled, blended prediction of `geoseg run`
(`geoseg.predict.predict_scene`) into a temporary class raster, then accumulates one confusion
matrix block by block against the labels (a raster on the image grid or polygons rasterized
per block). No scene-sized array is ever held. Pixels are scored where the labels have a class
and the image has data; labels are read the way the model was trained (the package records
the label-value mapping and nodata values), unless overridden.
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
import shapely

from geoseg.classes import CLASS_NODATA, ClassInfo
from geoseg.config import predict_settings_for
from geoseg.errors import ConfigError, OutputError
from geoseg.geo.window import PixelWindow, format_window, parse_window
from geoseg.inference.predict import Predictor, SceneWindow, predict_scene, resolve_device
from geoseg.io.raster import open_scene
from geoseg.models.package import ModelPackage, SceneFacts, check_scene, load_package
from geoseg.training.data import IGNORE, LabelConfig, LabelReader, open_labels
from geoseg.training.metrics import Scores, confusion_matrix, scores

REPORT_NAME = "report.json"
CONFUSION_NAME = "confusion.png"
SIDE_BY_SIDE_NAME = "side_by_side.png"
SIDE_BY_SIDE_MAX_PX = 1024
"""Default side of the side-by-side window; larger windows are shown decimated to this."""


@dataclass(frozen=True)
class EvaluateSettings:
    """What to evaluate and how to predict it (tile settings default to the package's)."""

    model: Path
    image: Path
    labels: Path
    window: str | None = None
    out: Path | None = None
    device: str = "auto"
    tile_size: int | None = None
    overlap: int | None = None
    batch_size: int | None = None
    tta: bool = False
    label_map: dict[int, int] | None = None
    label_nodata: Sequence[int] | None = None
    class_column: str | None = None
    preview_window: str | None = None
    """Window of the side-by-side PNG (default: centred, at most 1024 px a side)."""


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

    def to_json(self, settings: EvaluateSettings, package: ModelPackage) -> dict[str, Any]:
        s = self.scores
        return {
            "model": {"path": str(package.path), "name": package.metadata.name},
            "model_sha256": package.sha256,
            "image": str(settings.image),
            "labels": str(settings.labels),
            "window": format_window(self.window),
            "tta": settings.tta,
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
    package = load_package(settings.model)
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
    predictor = Predictor(package, resolve_device(settings.device), tta=settings.tta)
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
            matrix = score_class_raster(classes_path, labels, window, [c.id for c in classes])
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
    )
    if settings.out is None:
        return result
    report_path = settings.out / REPORT_NAME
    report_path.write_text(json.dumps(result.to_json(settings, package), indent=2) + "\n")
    png = write_confusion_png(matrix, classes, settings.out / CONFUSION_NAME)
    files = {"report": report_path, "png": png}
    if side_by_side is not None:
        files["compare"] = side_by_side
    return replace(result, files=files)


def preview_window(text: str | None, evaluated: PixelWindow, shape: tuple[int, int]) -> PixelWindow:
    """The side-by-side window: ``text`` (scene pixels, inside the evaluated window) or the
    centred part of the evaluated window of at most `SIDE_BY_SIDE_MAX_PX` a side."""
    if text is not None:
        window = parse_window(text, shape, option="--preview-window")
        if evaluated.intersection(window) != window:
            raise ConfigError(
                f"--preview-window {text!r} ({format_window(window)}) is not inside the "
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


def _prepare(out: Path) -> None:
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(
            f"{out}: cannot create the report folder ({exc.strerror or exc}); "
            "pass a writable folder with --out"
        ) from None


# ---------------------------------------------------------------------------------------------
# Confusion-matrix picture (Pillow only).

_CELL_PX = 64
_MARGIN_PX = 12


def write_confusion_png(matrix: np.ndarray, classes: Sequence[ClassInfo], path: Path) -> Path:
    """Row-normalized confusion matrix as a PNG: shade = share of the reference class.

    Each cell shows the row percentage and the pixel count; rows are reference classes,
    columns predicted classes, and the class colours mark both axes.
    """
    from PIL import Image, ImageDraw, ImageFont

    n = len(classes)
    font = ImageFont.load_default(size=13)
    small = ImageFont.load_default(size=10)
    title_font = ImageFont.load_default(size=15)
    label_w = max(int(font.getlength(c.name)) for c in classes) + 3 * _MARGIN_PX + 12
    top = 56 + label_w
    width = label_w + n * _CELL_PX + 2 * _MARGIN_PX
    height = top + n * _CELL_PX + 40
    image = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(image)
    draw.text(
        (_MARGIN_PX, 10),
        "confusion matrix (rows: reference, columns: predicted)",
        fill="black",
        font=title_font,
    )
    row_sums = matrix.sum(axis=1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        shares = np.where(row_sums > 0, matrix / row_sums, 0.0)
    # column labels, rotated
    for j, c in enumerate(classes):
        text = Image.new("RGBA", (label_w, _CELL_PX), (255, 255, 255, 0))
        ImageDraw.Draw(text).text((_MARGIN_PX, _CELL_PX // 2 - 8), c.name, fill="black", font=font)
        rotated = text.rotate(90, expand=True)
        x = label_w + j * _CELL_PX
        image.paste(rotated, (x, 44), rotated)
        draw.rectangle([x + 2, top - 10, x + _CELL_PX - 2, top - 4], fill=c.color)
    for i, c in enumerate(classes):
        y = top + i * _CELL_PX
        draw.rectangle([label_w - 14, y + 2, label_w - 8, y + _CELL_PX - 2], fill=c.color)
        draw.text((_MARGIN_PX, y + _CELL_PX // 2 - 8), c.name, fill="black", font=font)
        for j in range(n):
            x = label_w + j * _CELL_PX
            share = float(shares[i, j])
            shade = _blues(share)
            draw.rectangle(
                [x, y, x + _CELL_PX - 1, y + _CELL_PX - 1], fill=shade, outline=(200, 200, 200)
            )
            ink = "white" if share > 0.5 else "black"
            draw.text((x + 6, y + 14), f"{100 * share:.1f}%", fill=ink, font=font)
            draw.text((x + 6, y + 36), _count(int(matrix[i, j])), fill=ink, font=small)
    for k in range(n):
        x, y = label_w + k * _CELL_PX, top + k * _CELL_PX
        draw.rectangle([x, y, x + _CELL_PX - 1, y + _CELL_PX - 1], outline="black", width=2)
    s = scores(matrix)
    draw.text(
        (_MARGIN_PX, height - 28),
        f"overall accuracy {s.overall_accuracy:.3f}   mIoU {s.miou:.3f}   "
        f"macro-F1 {s.macro_f1:.3f}",
        fill="black",
        font=font,
    )
    try:
        image.save(path, format="PNG")
    except OSError as exc:
        raise OutputError(f"{path}: cannot write the PNG ({exc})") from None
    return path


def _blues(share: float) -> tuple[int, int, int]:
    """White (0) to dark blue (1)."""
    low, high = np.array([247, 251, 255]), np.array([8, 48, 107])
    return tuple(int(v) for v in low + (high - low) * min(max(share, 0.0), 1.0))  # type: ignore[return-value]


def _count(n: int) -> str:
    if n >= 1_000_000:
        return f"{n / 1e6:.1f}M"
    if n >= 10_000:
        return f"{n / 1e3:.0f}k"
    return str(n)


# ---------------------------------------------------------------------------------------------
# Prediction next to the reference labels (Pillow only).

_PANEL_GAP_PX = 16
_CAPTION_PX = 24
_PANEL_TOP_PX = _MARGIN_PX + 2 * _CAPTION_PX
_LEGEND_ROW_PX = 24


def side_by_side_panels(shape: tuple[int, int]) -> tuple[tuple[int, int], tuple[int, int], int]:
    """Top-left (x, y) of the prediction and reference panels, and the decimation step."""
    step = max(1, math.ceil(max(shape) / SIDE_BY_SIDE_MAX_PX))
    cols = math.ceil(shape[1] / step)
    return (_MARGIN_PX, _PANEL_TOP_PX), (_MARGIN_PX + cols + _PANEL_GAP_PX, _PANEL_TOP_PX), step


def write_side_by_side_png(
    predicted: np.ndarray,
    reference: np.ndarray,
    classes: Sequence[ClassInfo],
    path: Path,
    *,
    title: str = "",
) -> Path:
    """Prediction (class ids) left, reference labels (class indexes) right, and a legend.

    Both panels use the class colours at one picture pixel per scene pixel; unscored pixels
    (nodata, unlabelled) are light grey, so agreement can be judged by eye. Windows larger than
    `SIDE_BY_SIDE_MAX_PX` are decimated (every k-th pixel) to that size.
    """
    from PIL import Image, ImageDraw, ImageFont

    from geoseg.render.preview import colorize

    (lx, top), (rx, _), step = side_by_side_panels(predicted.shape)
    ids = np.array([c.id for c in classes], dtype=np.uint8)
    safe = np.minimum(reference, len(ids) - 1)
    ref_ids = np.where(reference == IGNORE, CLASS_NODATA, ids[safe]).astype(np.uint8)
    left = colorize(predicted[::step, ::step], classes)
    right = colorize(ref_ids[::step, ::step], classes)
    rows, cols = left.shape[:2]
    font = ImageFont.load_default(size=13)
    legend_w = sum(30 + int(font.getlength(c.name)) for c in classes)
    width = max(rx + cols + _MARGIN_PX, legend_w + 2 * _MARGIN_PX, 420)
    image = Image.new("RGB", (width, top + rows + _LEGEND_ROW_PX + _MARGIN_PX), "white")
    draw = ImageDraw.Draw(image)
    draw.text((_MARGIN_PX, 4), title, fill="black", font=font)
    for x, panel, caption in ((lx, left, "prediction"), (rx, right, "reference labels")):
        draw.text((x, _CAPTION_PX), caption, fill="black", font=font)
        image.paste(Image.fromarray(panel, "RGB"), (x, top))
    x, y = _MARGIN_PX, top + rows + 8
    for c in classes:
        draw.rectangle([x, y, x + 12, y + 12], fill=c.rgb, outline="black")
        draw.text((x + 16, y - 1), c.name, fill="black", font=font)
        x += 30 + int(font.getlength(c.name))
    try:
        image.save(path, format="PNG")
    except OSError as exc:
        raise OutputError(f"{path}: cannot write the PNG ({exc})") from None
    return path
