"""What the segment flow's scene tasks pass around: jobs, stage results, cache keys, disk state.

A `SceneJob` is one scene of a run as a task on another process (a Dask worker) needs it: the
raster to open (the scene file, or the VRT `select_scenes` wrote under ``OUT/.geoseg-inputs/``
for a STAC item, a remote raster or a scene at another pixel size), how its pixels are read
(`ReadPlan`), what run.json says about the input, the band files behind it, the AOI, the pixel
window and its cache key. The tasks chain small records (`PredictedScene`, `VectorizedScene`,
`PublishedScene`) that hold paths and numbers, never arrays. `scene_key` hashes everything a
scene's outputs depend on and nothing else; `SceneJob.stage` reads how far a scene got on
disk, so a cache entry is trusted only while its files are there.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import IntEnum
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_serializer

import geoseg
from geoseg.config import RunSettings
from geoseg.geo.scene import SceneGrid
from geoseg.inference.scene import SceneWindow
from geoseg.inference.settings import PredictSettings, PredictStats
from geoseg.io.outputs import CLASSES_NAME, CONFIDENCE_NAME, POLYGONS_NAME
from geoseg.io.pixels import ReadPlan
from geoseg.models.package import ModelPackage
from geoseg.pipeline.record import SceneResult
from geoseg.sources.hrefs import is_remote, redact

CACHE_DIR_NAME = ".geoseg-cache"
"""Folder under the output folder holding the persisted task results (the resume state)."""


INPUTS_DIR_NAME = ".geoseg-inputs"
"""Folder under the output folder holding the scene VRTs of a run (every worker reads them)."""

RECORDS_VERSION = 3
"""Bumped when the persisted task records change shape (2: moved to flows.jobs, with the
resolved prediction settings; 3: `SceneJob` carries the read plan, input record, band hrefs,
label and AOI layer, and STAC/VRT scenes are keyed by their sources), so a cache written by an
older geoseg is recomputed, not misread."""

KEY_FILE = ".geoseg-key"
"""File in a published scene folder: the cache key it was made with on the first line, then
the name of every file published with it (a scene missing one of them is made again)."""

SCENE_OUTPUTS = (CLASSES_NAME, CONFIDENCE_NAME, POLYGONS_NAME)
"""The files a published scene must have when its key file lists none (written before 3)."""


class SceneStage(IntEnum):
    """How far a scene got on disk, as seen before a (re)run."""

    NOTHING = 0
    PREDICTED = 1
    VECTORIZED = 2
    PUBLISHED = 3


class SceneJob(BaseModel):
    """One scene of a run, as the scene tasks see it: what to open and how to read it, the AOI,
    the pixel window and the cache key.

    Pickled (to Dask workers, into the result cache) it is complete; as JSON (what the Prefect
    server stores as the scene subflow's parameters) its ``hrefs`` are redacted: signed URLs
    carry their keys in the query string.
    """

    model_config = ConfigDict(frozen=True)

    name: str = Field(description="output folder name (file stem or item id, unique in the run)")
    scene: Path = Field(
        description="the raster GDAL opens: the scene file, or its VRT under OUT/.geoseg-inputs"
    )
    aoi: Path = Field(description="the AOI file (re-read in the task: tasks pass paths)")
    window: tuple[int, int, int, int] = Field(description="row_off, col_off, height, width (px)")
    key: str = Field(description="cache key: sha256 of everything the outputs depend on")
    out: Path = Field(description="the run's output folder")
    aoi_layer: str | None = Field(None, description="the AOI layer of a multi-layer file")
    label: str = Field("", description="how messages name the scene (item id, redacted URL)")
    plan: ReadPlan | None = Field(
        None, description="bands, unit conversions and cloud mask (None: bands as stored)"
    )
    source: dict[str, Any] = Field(
        default_factory=dict, description="what run.json says about the input (redacted)"
    )
    hrefs: tuple[str, ...] = Field(
        (), description="the band and mask files behind the scene (GDAL's remote settings)"
    )
    aoi_margin: float = Field(
        0.0, description="how far beyond the AOI the scene is predicted (the mosaic's margin)"
    )

    @field_serializer("hrefs", when_used="json")
    def _redacted_hrefs(self, hrefs: tuple[str, ...]) -> list[str]:
        return [redact(h) for h in hrefs]

    @property
    def stage_dir(self) -> Path:
        """Where the scene's files are assembled before publishing (named by its key)."""
        return self.out / f".{self.name}.{self.key[:16]}.staged"

    @property
    def final_dir(self) -> Path:
        return self.out / self.name

    def stage(self) -> SceneStage:
        """How far this scene got on disk, with this key (older keys count as nothing).

        Published means: the key file names this key and every file it lists is there (a
        user who deleted the polygons, or just the preview, gets the scene made again).
        """
        published = read_key_file(self.final_dir / KEY_FILE)
        if published is not None:
            key, files = published
            if key == self.key and all((self.final_dir / n).is_file() for n in files):
                return SceneStage.PUBLISHED
        if not all((self.stage_dir / n).is_file() for n in (CLASSES_NAME, CONFIDENCE_NAME)):
            return SceneStage.NOTHING
        if (self.stage_dir / POLYGONS_NAME).is_file():
            return SceneStage.VECTORIZED
        return SceneStage.PREDICTED


def write_key_file(folder: Path, key: str) -> None:
    """The key file of a scene folder about to be published: the key and the files beside it."""
    files = sorted(p.name for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))
    (folder / KEY_FILE).write_text("\n".join([key, *files]) + "\n", encoding="utf-8")


def read_key_file(path: Path) -> tuple[str, tuple[str, ...]] | None:
    """(key, published files) of a key file; None when it is missing or empty."""
    try:
        lines = [ln.strip() for ln in path.read_text(encoding="utf-8").splitlines()]
    except OSError:
        return None
    lines = [ln for ln in lines if ln]
    if not lines:
        return None
    return lines[0], tuple(lines[1:]) or SCENE_OUTPUTS


class RunPlan(BaseModel):
    """What `select_scenes` decided: the run's settings (scene inputs as given, the STAC search
    with its datetime window resolved) and its scenes."""

    run: RunSettings
    jobs: list[SceneJob]
    mosaic_phase: tuple[float, float] | None = None
    """Where the mosaic's pixel lines lie (`geoseg.mosaic.grid.grid_phase`), with a mosaic."""
    mosaic_key: str | None = None
    """The mosaic's cache key (`flows.tasks.mosaic_key`), with a mosaic."""

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


def href_fingerprint(href: str) -> dict[str, Any]:
    """A band file's identity: a local file's `file_fingerprint`, else the sha256 of the href.

    Remote hrefs are hashed, never stored: a signed URL carries its keys. (A file replaced at
    the same URL is not seen; a re-signed URL is a new key.)
    """
    if not is_remote(href):
        path = Path(href)
        if path.is_file():
            return file_fingerprint(path)
    return {"href_sha256": hashlib.sha256(href.encode()).hexdigest()}


def grid_parts(grid: SceneGrid) -> dict[str, Any]:
    """A grid as plain data: CRS (WKT), transform and shape."""
    return {
        "crs": grid.crs.to_wkt() if grid.crs else "",
        "transform": [float(v) for v in list(grid.transform)[:6]],
        "shape": [grid.height, grid.width],
    }


def plan_parts(plan: ReadPlan | None) -> dict[str, Any] | None:
    """A read plan as plain data (bands, conversions, mask rule)."""
    return None if plan is None else dataclasses.asdict(plan)


def scene_identity(target: SceneWindow, *, vrt: bool) -> dict[str, Any]:
    """What a scene's pixels are, for its cache key.

    A scene file read as it is: its `file_fingerprint` (path, size, mtime). A scene read
    through a VRT (written again by every run, so its own fingerprint would change every
    time): the item id and collection, every band and mask file behind it (`href_fingerprint`),
    the grid the VRT puts them on and how they are resampled. Both add the read plan: bands,
    unit conversions and the cloud-mask rule.
    """
    if not vrt:
        return {"file": file_fingerprint(target.scene.path), "plan": plan_parts(target.plan)}
    source: Mapping[str, Any] = target.source
    return {
        "item": source.get("item"),
        "collection": source.get("collection"),
        "kind": source.get("kind"),
        "bands": [href_fingerprint(h) for h in target.hrefs],
        "grid": grid_parts(target.scene.grid),
        "resampling": (source.get("grid") or {}).get("resampling"),
        "plan": plan_parts(target.plan),
    }


def scene_key(
    *,
    scene: Mapping[str, Any],
    window: tuple[int, int, int, int],
    aoi_sha256: str,
    run: RunSettings,
    aoi_margin: float = 0.0,
    packages: Sequence[ModelPackage],
    predict_settings: PredictSettings,
) -> str:
    """sha256 of everything a scene's outputs depend on, and nothing else.

    ``scene`` is its `scene_identity`. Left out on purpose: batch size, reader threads,
    device, Dask workers and block size change speed, not results (vectorizing is seam-exact
    whatever the block size).
    """
    parts = {
        "scene": scene,
        "window": list(window),
        "aoi_sha256": aoi_sha256,
        "aoi_layer": run.aoi_layer,
        "aoi_margin": aoi_margin,
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
    text = json.dumps(parts, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


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
    vrts: Mapping[Path, Path] | None = None,
) -> list[SceneJob]:
    """One job per planned scene, keyed by everything its outputs depend on (`scene_key`).

    ``vrts`` maps the VRTs the planning wrote (in a temp folder) to where the jobs read them
    (``OUT/.geoseg-inputs/``); scenes not in it are files read as they are.
    """
    vrts = vrts or {}
    aoi_sha = file_sha256(run.aoi)
    jobs = []
    for name, target in planned:
        w = target.window
        window = (w.row_off, w.col_off, w.height, w.width)
        vrt = vrts.get(target.scene.path)
        key = scene_key(
            scene=scene_identity(target, vrt=vrt is not None),
            window=window,
            aoi_margin=target.aoi_margin,
            aoi_sha256=aoi_sha,
            run=run,
            packages=packages,
            predict_settings=predict_settings,
        )
        jobs.append(
            SceneJob(
                name=name,
                scene=vrt or target.scene.path,
                aoi=run.aoi,
                aoi_layer=run.aoi_layer,
                window=window,
                key=key,
                out=run.out,
                label=target.scene.label,
                plan=target.plan,
                source=target.source,
                hrefs=target.hrefs,
                aoi_margin=target.aoi_margin,
            )
        )
    return jobs
