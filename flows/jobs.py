"""What the segment flow's scene tasks pass around: jobs, stage results, cache keys, disk state.

A `SceneJob` is one scene of a run (paths, pixel window and its cache key); the tasks chain
small records (`PredictedScene`, `VectorizedScene`, `PublishedScene`) that hold paths and
numbers, never arrays. `scene_key` hashes everything a scene's outputs depend on and nothing
else; `SceneJob.stage` reads how far a scene got on disk, so a cache entry is trusted only
while its files are there.
"""

from __future__ import annotations

import hashlib
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from enum import IntEnum
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

import geoseg
from geoseg.config import RunSettings
from geoseg.inference.scene import SceneWindow
from geoseg.inference.settings import PredictSettings, PredictStats
from geoseg.io.outputs import CLASSES_NAME, CONFIDENCE_NAME, POLYGONS_NAME
from geoseg.models.package import ModelPackage
from geoseg.pipeline.record import SceneResult

CACHE_DIR_NAME = ".geoseg-cache"
"""Folder under the output folder holding the persisted task results (the resume state)."""


RECORDS_VERSION = 2
"""Bumped when the persisted task records change shape (2: moved to flows.jobs, with the
resolved prediction settings), so a cache written by an older geoseg is recomputed, not
misread."""

KEY_FILE = ".geoseg-key"
"""File in a published scene folder holding the cache key it was made with."""


class SceneStage(IntEnum):
    """How far a scene got on disk, as seen before a (re)run."""

    NOTHING = 0
    PREDICTED = 1
    VECTORIZED = 2
    PUBLISHED = 3


class SceneJob(BaseModel):
    """One scene of a run, as the scene tasks see it: paths, its pixel window and cache key."""

    model_config = ConfigDict(frozen=True)

    name: str = Field(description="output folder name (file stem, unique in the run)")
    scene: Path = Field(description="the scene file")
    aoi: Path = Field(description="the AOI file (re-read in the task: tasks pass paths)")
    window: tuple[int, int, int, int] = Field(description="row_off, col_off, height, width (px)")
    key: str = Field(description="cache key: sha256 of everything the outputs depend on")
    out: Path = Field(description="the run's output folder")

    @property
    def stage_dir(self) -> Path:
        """Where the scene's files are assembled before publishing (named by its key)."""
        return self.out / f".{self.name}.{self.key[:16]}.staged"

    @property
    def final_dir(self) -> Path:
        return self.out / self.name

    def stage(self) -> SceneStage:
        """How far this scene got on disk, with this key (older keys count as nothing)."""
        key_file = self.final_dir / KEY_FILE
        outputs = (CLASSES_NAME, CONFIDENCE_NAME, POLYGONS_NAME)
        if (
            key_file.is_file()
            and key_file.read_text(encoding="utf-8").strip() == self.key
            and all((self.final_dir / n).is_file() for n in outputs)
        ):
            return SceneStage.PUBLISHED
        if not all((self.stage_dir / n).is_file() for n in (CLASSES_NAME, CONFIDENCE_NAME)):
            return SceneStage.NOTHING
        if (self.stage_dir / POLYGONS_NAME).is_file():
            return SceneStage.VECTORIZED
        return SceneStage.PREDICTED


class RunPlan(BaseModel):
    """What `select_scenes` decided: the run's settings (scene files resolved) and its scenes."""

    run: RunSettings
    jobs: list[SceneJob]

    @property
    def cache_dir(self) -> Path:
        return self.run.out / CACHE_DIR_NAME


@dataclass(frozen=True)
class PredictedScene:
    """Result of `predict`: the staged class/confidence COGs and the prediction figures."""

    job: SceneJob
    stats: PredictStats
    timings_s: dict[str, float]
    resolved: dict[str, Any]
    """How it was predicted (`geoseg.pipeline.record.resolved_prediction`), for run.json."""
    worker: str = ""
    """The Dask worker that predicted it ("" outside Dask)."""


@dataclass(frozen=True)
class VectorizedScene:
    """Result of `vectorize`: polygons.gpkg staged beside the rasters."""

    predicted: PredictedScene
    polygons: int
    seconds: float
    blocks: int = 1
    dask_workers: int = 0


@dataclass(frozen=True)
class PublishedScene:
    """Result of `publish`: the run.json record and how the scene was vectorized."""

    result: SceneResult
    resolved: dict[str, Any]
    blocks: int = 1
    dask_workers: int = 0
    worker: str = ""


def file_fingerprint(path: Path) -> dict[str, Any]:
    """A scene's identity without reading it: resolved path, size and modification time."""
    st = path.stat()
    return {"path": str(path.resolve()), "size": st.st_size, "mtime_ns": st.st_mtime_ns}


def file_sha256(path: Path) -> str:
    """Content hash of a small file (the AOI): an edited AOI means new outputs."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def scene_key(
    *,
    scene: Path,
    window: tuple[int, int, int, int],
    aoi_sha256: str,
    run: RunSettings,
    packages: Sequence[ModelPackage],
    predict_settings: PredictSettings,
) -> str:
    """sha256 of everything a scene's outputs depend on, and nothing else.

    Left out on purpose: batch size, reader threads, device, Dask workers and block size
    change speed, not results (vectorizing is seam-exact whatever the block size).
    """
    parts = {
        "scene": file_fingerprint(scene),
        "window": list(window),
        "aoi_sha256": aoi_sha256,
        "models": [p.sha256 for p in packages],
        "tile_px": predict_settings.tile_px,
        "overlap_px": predict_settings.overlap_px,
        "blend": str(predict_settings.blend),
        "tta": run.tta,
        "connectivity": run.connectivity,
        "min_area": run.min_area,
        "simplify": run.simplify,
        "geoseg": geoseg.__version__,
        "records": RECORDS_VERSION,
    }
    return hashlib.sha256(repr(sorted(parts.items())).encode()).hexdigest()


def remove_leftovers(job: SceneJob) -> None:
    """Temp and staging folders of this scene left by killed runs or older settings."""
    key = "?" * 16  # any key, and only a key: scene "a" must not match scene "a.b"
    for pattern in (f"..{job.name}.{key}.staged.partial-*", f".{job.name}.{key}.staged"):
        for path in job.out.glob(pattern):
            shutil.rmtree(path, ignore_errors=True)


def scene_jobs(
    run: RunSettings,
    planned: Sequence[tuple[str, SceneWindow]],
    *,
    packages: Sequence[ModelPackage],
    predict_settings: PredictSettings,
) -> list[SceneJob]:
    """One job per planned scene, keyed by everything its outputs depend on (`scene_key`)."""
    aoi_sha = file_sha256(run.aoi)
    jobs = []
    for name, target in planned:
        w = target.window
        window = (w.row_off, w.col_off, w.height, w.width)
        key = scene_key(
            scene=target.scene.path,
            window=window,
            aoi_sha256=aoi_sha,
            run=run,
            packages=packages,
            predict_settings=predict_settings,
        )
        jobs.append(
            SceneJob(
                name=name, scene=target.scene.path, aoi=run.aoi, window=window, key=key, out=run.out
            )
        )
    return jobs
