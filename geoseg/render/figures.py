"""Evaluation figures: the confusion matrix and prediction beside reference, as PNGs (Pillow).

Drawn from plain arrays and class lists (no metrics computed here): `geoseg evaluate` writes
them beside its report.json.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from geoseg.classes import CLASS_NODATA, ClassInfo
from geoseg.errors import OutputError

_CELL_PX = 64


_MARGIN_PX = 12


def write_confusion_png(
    matrix: np.ndarray, classes: Sequence[ClassInfo], path: Path, *, caption: str = ""
) -> Path:
    """Row-normalized confusion matrix as a PNG: shade = share of the reference class.

    Each cell shows the row percentage and the pixel count; rows are reference classes,
    columns predicted classes, and the class colours mark both axes. ``caption`` (e.g. the
    overall scores) is written below the matrix.
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
    draw.text(
        (_MARGIN_PX, height - 28),
        caption,
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
    ref_ids = np.where(reference == CLASS_NODATA, CLASS_NODATA, ids[safe]).astype(np.uint8)
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


SIDE_BY_SIDE_MAX_PX = 1024
"""Default side of the side-by-side window; larger windows are shown decimated to this."""
