"""What a run did: per-scene results and ``run.json`` (inputs, model, settings, versions).

`SceneResult` is one scene's record (outputs, tiles, pixels per class, polygons, timings);
`write_run_json` writes the run's record last and atomically, with the settings as given and
as resolved (package defaults filled in, the device and TTA actually used).
"""

from __future__ import annotations

import json
import platform
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
import shapely
import torch

import geoseg
from geoseg.config import RunSettings
from geoseg.errors import OutputError
from geoseg.inference.predictor import Predictor
from geoseg.inference.scene import SceneWindow
from geoseg.inference.settings import PredictSettings, PredictStats
from geoseg.io.outputs import (
    CLASSES_NAME,
    CONFIDENCE_NAME,
    POLYGONS_NAME,
    PREVIEW_NAME,
    RUN_JSON,
)
from geoseg.io.staging import disk_full_error, written_atomically
from geoseg.models.package import (
    ModelPackage,
    package_summary,
)
from geoseg.sources.hrefs import redact


@dataclass
class SceneResult:
    """Outputs and figures of one scene, as recorded in run.json."""

    scene: str
    path: str
    crs: str
    window: dict[str, int]
    outputs: dict[str, str]
    tiles: int
    skipped_tiles: int
    window_px: int
    valid_px: int
    class_px: dict[str, int]
    polygons: int
    timings_s: dict[str, float] = field(default_factory=dict)
    masked_px: int = 0
    """Window pixels dropped by the cloud/quality mask (nodata in the outputs)."""
    masked_share: float = 0.0
    """``masked_px`` over the window's pixels."""
    input: dict[str, Any] = field(default_factory=dict)
    """Where the pixels came from and how they were converted, masked and resampled."""


@dataclass
class RunReport:
    """What a run produced: per-scene results, mosaics, and the run.json path."""

    out: Path
    scenes: list[SceneResult]
    run_json: Path
    seconds: float
    mosaic: dict[str, Any] | None = None
    """The mosaic's run.json record (`geoseg.mosaic.write_mosaic`), with --mosaic."""

    @property
    def mosaics(self) -> list[str]:
        """The mosaic folders written (run.json's ``mosaics``)."""
        return mosaic_paths(self.mosaic)

    @property
    def pixels_per_second(self) -> float:
        predicted = sum(s.window_px for s in self.scenes)
        seconds = sum(s.timings_s.get("predict", 0.0) for s in self.scenes)
        return predicted / seconds if seconds else 0.0


def scene_result(
    name: str,
    target: SceneWindow,
    *,
    final_dir: Path,
    stats: PredictStats,
    polygons: int,
    timings: dict[str, float],
) -> SceneResult:
    """The run.json record of a scene published to ``final_dir``."""
    w = target.window
    return SceneResult(
        scene=name,
        path=target.scene.display if target.source else str(target.scene.path),
        crs=target.scene.grid.crs.to_string(),
        window={"row_off": w.row_off, "col_off": w.col_off, "height": w.height, "width": w.width},
        outputs={
            "classes": str(final_dir / CLASSES_NAME),
            "confidence": str(final_dir / CONFIDENCE_NAME),
            "polygons": str(final_dir / POLYGONS_NAME),
            "preview": str(final_dir / PREVIEW_NAME),
        },
        tiles=stats.tiles,
        skipped_tiles=stats.skipped_tiles,
        window_px=stats.window_px,
        valid_px=stats.valid_px,
        class_px={str(k): v for k, v in stats.class_px.items()},
        polygons=polygons,
        timings_s={k: round(v, 3) for k, v in timings.items()},
        masked_px=stats.masked_px,
        masked_share=round(stats.masked_px / stats.window_px, 6) if stats.window_px else 0.0,
        input=target.source,
    )


def redacted_settings(settings: RunSettings) -> dict[str, Any]:
    """The settings as JSON with URLs stripped of credentials and signatures."""
    doc = json.loads(settings.model_dump_json())
    doc["scenes"] = [redact(p) for p in doc.get("scenes", [])]
    if doc.get("stac"):
        doc["stac"]["api"] = redact(doc["stac"]["api"])
    return doc


def _model_record(package: ModelPackage) -> dict[str, Any]:
    return {
        "path": str(package.path),
        "sha256": package.sha256,
        "name": package.metadata.name,
        "architecture": package_summary(package)["architecture"],
    }


def versions() -> dict[str, str]:
    """Versions of what produced the outputs, for reproducibility."""
    import pyogrio
    import segmentation_models_pytorch as smp

    return {
        "geoseg": geoseg.__version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "segmentation_models_pytorch": smp.__version__,
        "numpy": np.__version__,
        "rasterio": rasterio.__version__,
        "gdal": rasterio.__gdal_version__,
        "pyogrio": pyogrio.__version__,
        "shapely": shapely.__version__,
    }


def resolved_prediction(predictor: Predictor, settings: PredictSettings) -> dict[str, Any]:
    """How the scenes were actually predicted: settings after package defaults, device, TTA."""
    return {
        **asdict(settings),
        "device": str(predictor.device),
        "tta_transforms": len(predictor.transforms),
    }


def mosaic_paths(mosaic: dict[str, Any] | None) -> list[str]:
    """run.json's ``mosaics``: the mosaic's folder, or none."""
    return [] if mosaic is None else [mosaic["path"]]


def write_run_json(
    settings: RunSettings,
    *,
    packages: Sequence[ModelPackage],
    resolved: dict[str, Any],
    results: Sequence[SceneResult],
    seconds: float,
    mosaic: dict[str, Any] | None = None,
) -> Path:
    """Record inputs, model(s), settings, versions, outputs and timings (atomically).

    ``resolved``: `resolved_prediction` of the predictor that ran the scenes.
    """
    doc: dict[str, Any] = {
        "geoseg_run": 1,
        "inputs": {
            "aoi": str(settings.aoi),
            "scenes": [redact(p) for p in settings.scenes],
            "stac": None if settings.stac is None else redacted_settings(settings)["stac"],
        },
        "model": _model_record(packages[0]),
        "ensemble": [_model_record(p) for p in packages[1:]],
        "settings": {**redacted_settings(settings), "resolved": resolved},
        "versions": versions(),
        "scenes": [asdict(r) for r in results],
        "mosaics": mosaic_paths(mosaic),
        "mosaic": mosaic,
        "timings_s": {"total": round(seconds, 3)},
    }
    path = settings.out / RUN_JSON
    try:
        with written_atomically(path) as tmp:
            tmp.write_text(json.dumps(doc, indent=2, default=str), encoding="utf-8")
    except OSError as exc:
        full = disk_full_error(exc, final=path)
        raise full or OutputError(f"{path}: cannot write the run record ({exc})") from exc
    return path
