"""The embedded default: a synthetic scene + AOI, the shipped model, the whole pipeline.

`geoseg demo` needs no data and no network. Inputs go to ``OUT/inputs/`` (scene.tif,
labels.tif, aoi.geojson) and results to ``OUT/scene/`` exactly as `geoseg run` writes them, so
the same run can be repeated by hand. The synthetic labels also let the demo report how well
the prediction agrees with the truth.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rasterio
from rasterio.windows import from_bounds

from geoseg.classes import CLASS_NODATA
from geoseg.config import RunSettings
from geoseg.models import DEMO_MODEL
from geoseg.models.package import load_package
from geoseg.pipeline.record import RunReport
from geoseg.pipeline.run import run
from geoseg.progress import Progress
from geoseg.synthetic import SyntheticScene, write_synthetic_scene
from geoseg.training.metrics import confusion_matrix, scores


@dataclass(frozen=True)
class DemoResult:
    inputs: SyntheticScene
    report: RunReport
    miou: float
    overall_accuracy: float


def run_demo(
    out: Path,
    *,
    size_px: int = 1024,
    seed: int = 7,
    device: str = "auto",
    model: Path = DEMO_MODEL,
    progress: Progress | None = None,
) -> DemoResult:
    """Generate inputs under ``out/inputs``, run the pipeline into ``out``, score it."""
    inputs = write_synthetic_scene(
        out / "inputs", size_px=size_px, seed=seed, nodata_margin_px=size_px // 16
    )
    settings = RunSettings(
        aoi=inputs.aoi_path, scenes=[inputs.image_path], models=[model], out=out, device=device
    )
    report = run(settings, progress)
    classes_path = Path(report.scenes[0].outputs["classes"])
    matrix = agreement(
        classes_path, inputs.labels_path, [c.id for c in load_package(model).metadata.classes]
    )
    s = scores(matrix)
    return DemoResult(inputs, report, s.miou, s.overall_accuracy)


def agreement(classes_path: Path, labels_path: Path, class_ids: list[int]) -> np.ndarray:
    """Confusion matrix of a class raster against reference labels covering it (block-wise).

    Only pixels that are classified (not nodata) and labelled count.
    """
    lut = np.full(256, -1, dtype=np.int64)
    lut[class_ids] = np.arange(len(class_ids))
    n = len(class_ids)
    matrix = np.zeros((n, n), dtype=np.int64)
    with rasterio.open(classes_path) as pred_ds, rasterio.open(labels_path) as ref_ds:
        offset = from_bounds(*pred_ds.bounds, transform=ref_ds.transform)
        row0, col0 = round(offset.row_off), round(offset.col_off)
        for _, window in pred_ds.block_windows(1):
            pred = pred_ds.read(1, window=window)
            ref_window = window.__class__(
                window.col_off + col0, window.row_off + row0, window.width, window.height
            )
            ref = ref_ds.read(1, window=ref_window)
            ignore = (pred == CLASS_NODATA) | (ref == CLASS_NODATA)
            matrix += confusion_matrix(lut[ref], lut[pred], n, ignore=ignore)
    return matrix
