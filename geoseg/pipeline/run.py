"""`geoseg run` as a library function: plan the scenes, predict, write COGs, vectorize, report.

Validation comes first (AOI, model package, every scene against the package, output folder),
so bad input fails before any output exists. Each scene is written into a hidden temp folder
and renamed to ``OUT/<scene>/`` only when all its files are complete; ``run.json`` is written
last, the same way.
"""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import shutil
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import rasterio
import shapely
import torch

import geoseg
from geoseg.config import RunSettings, resolve_predict_settings, vectorize_options
from geoseg.errors import AoiOutsideScenesError, OutputError, SceneError
from geoseg.geo.grid import TileGrid
from geoseg.inference.predict import (
    Predictor,
    PredictSettings,
    PredictStats,
    SceneWindow,
    predict_scene,
    resolve_device,
)
from geoseg.io.aoi import Aoi, aoi_in_crs, aoi_window, read_aoi
from geoseg.io.faults import disk_full_error, remove_stale_entries
from geoseg.io.outputs import (
    CLASSES_NAME,
    CONFIDENCE_NAME,
    POLYGONS_NAME,
    PREVIEW_NAME,
    RUN_JSON,
    write_category_names,
    write_mosaic_vrt,
)
from geoseg.io.raster import SceneInfo, open_scene, write_cog
from geoseg.io.vector import write_raster_qml
from geoseg.models.package import (
    ModelPackage,
    SceneFacts,
    check_scene,
    load_package,
    package_summary,
)
from geoseg.progress import NoProgress, Progress
from geoseg.render.preview import write_preview
from geoseg.vectorize import (
    Connectivity,
    SharedClient,
    VectorizeOptions,
    VectorizeResult,
    vectorize_raster,
)

if TYPE_CHECKING:
    from distributed import Client

SCENE_SUFFIXES = (".tif", ".tiff", ".vrt", ".jp2", ".img")


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


@dataclass
class RunReport:
    """What a run produced: per-scene results, mosaics, and the run.json path."""

    out: Path
    scenes: list[SceneResult]
    mosaics: list[str]
    run_json: Path
    seconds: float

    @property
    def pixels_per_second(self) -> float:
        predicted = sum(s.window_px for s in self.scenes)
        seconds = sum(s.timings_s.get("predict", 0.0) for s in self.scenes)
        return predicted / seconds if seconds else 0.0


def find_scene_files(inputs: Sequence[Path]) -> list[Path]:
    """Expand folders into their raster files (sorted); refuse missing paths and empty folders."""
    files: list[Path] = []
    for p in inputs:
        if p.is_dir():
            found = sorted(f for f in p.iterdir() if f.suffix.lower() in SCENE_SUFFIXES)
            if not found:
                raise SceneError(
                    f"{p}: no scenes in this folder (looked for {', '.join(SCENE_SUFFIXES)})"
                )
            files.extend(found)
        elif p.exists():
            files.append(p)
        else:
            raise SceneError(f"{p}: scene not found; pass existing files or folders with --scenes")
    return files


def scene_names(scenes: Sequence[SceneInfo]) -> list[str]:
    """Output folder names: file stems, made unique with a counter where stems collide."""
    seen: dict[str, int] = defaultdict(int)
    names = []
    for s in scenes:
        seen[s.name] += 1
        names.append(s.name if seen[s.name] == 1 else f"{s.name}_{seen[s.name]}")
    return names


def plan_scenes(aoi: Aoi, scenes: Sequence[SceneInfo]) -> list[tuple[str, SceneWindow]]:
    """The scenes the AOI touches, each with its pixel window and the AOI in its CRS."""
    planned = []
    for name, scene in zip(scene_names(scenes), scenes, strict=True):
        geom = aoi_in_crs(aoi, scene.grid.crs)
        window = aoi_window(geom, scene.grid)
        if window is not None:
            planned.append((name, SceneWindow(scene, window, geom)))
    if not planned:
        bounds = ", ".join(f"{v:.6g}" for v in aoi.geometry.bounds)
        listed = ", ".join(s.path.name for s in scenes)
        raise AoiOutsideScenesError(
            f"{aoi.path}: the AOI (bounds {bounds} in {aoi.crs.to_string()}) does not cover any "
            f"pixel of the scenes ({listed}); check the AOI's CRS or pass the scenes that cover it"
        )
    return planned


def prepare_output_dir(out: Path) -> None:
    """Create the output folder and prove it is writable, before any work starts."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / f".geoseg-write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise OutputError(
            f"{out}: the output folder is not writable ({exc.strerror or exc}); "
            "pass a folder you can write to with --out"
        ) from None
    remove_stale_entries(out)  # temp folders of runs killed before they could clean up


def check_inputs(settings: RunSettings) -> tuple[list[ModelPackage], list[tuple[str, SceneWindow]]]:
    """Read the AOI and model packages, plan the scenes and check each against every package.

    Everything a user can get wrong in the inputs fails here, before any output exists.
    """
    aoi = read_aoi(settings.aoi)
    packages = [load_package(p) for p in settings.models]
    scenes = [open_scene(p) for p in find_scene_files(settings.scenes)]
    planned = plan_scenes(aoi, scenes)
    for _, target in planned:
        s = target.scene
        for pkg in packages:
            check_scene(pkg, SceneFacts(s.path, s.band_count, s.dtypes, s.grid.gsd_m))
    return packages, planned


def make_predictor(
    settings: RunSettings, packages: Sequence[ModelPackage]
) -> tuple[Predictor, PredictSettings]:
    """The models on their device and the resolved tile/overlap/batch settings of a run."""
    package = packages[0]
    predict_settings = resolve_predict_settings(settings, package)  # tile/overlap checked
    predictor = Predictor(
        packages,
        resolve_device(settings.device),
        tta=settings.tta,
        compile_model=settings.compile,
    )
    predictor.check_tile_size(predict_settings.tile_px)
    if settings.batch_size is None:
        filled = predictor.fill_device_batch_size(
            predict_settings.tile_px, len(package.metadata.bands)
        )
        if filled is not None:
            predict_settings = dataclasses.replace(predict_settings, batch_size=filled)
    return predictor, predict_settings


def run(settings: RunSettings, progress: Progress | None = None) -> RunReport:
    """Run the whole pipeline for an AOI; see the module docstring for the guarantees."""
    t0 = time.perf_counter()
    progress = progress or NoProgress()
    packages, planned = check_inputs(settings)
    package = packages[0]
    predictor, predict_settings = make_predictor(settings, packages)
    connectivity = Connectivity(settings.connectivity)
    prepare_output_dir(settings.out)

    vectorize = vectorize_options(settings)
    # one Dask cluster for all scenes, started only if a class raster needs more than a block
    with SharedClient(workers=vectorize.workers, address=vectorize.dask_address) as shared:
        results = [
            run_scene(
                name,
                target,
                predictor=predictor,
                settings=predict_settings,
                out=settings.out,
                connectivity=connectivity,
                progress=progress,
                vectorize=vectorize,
                client=shared if vectorize.uses_dask else None,
            )
            for name, target in planned
        ]
    mosaics = write_mosaics(settings.out, results, package)
    seconds = time.perf_counter() - t0
    run_json = write_run_json(
        settings,
        package=package,
        predict_settings=predict_settings,
        predictor=predictor,
        results=results,
        mosaics=mosaics,
        seconds=seconds,
    )
    return RunReport(settings.out, results, mosaics, run_json, seconds)


def run_scene(
    name: str,
    target: SceneWindow,
    *,
    predictor: Predictor,
    settings: PredictSettings,
    out: Path,
    connectivity: Connectivity,
    progress: Progress,
    vectorize: VectorizeOptions | None = None,
    client: SharedClient | None = None,
) -> SceneResult:
    """Predict, convert to COGs and vectorize one scene into ``out/<name>/`` atomically."""
    final_dir = out / name
    tmp_dir = out / f".{name}.partial-{os.getpid()}"
    shutil.rmtree(tmp_dir, ignore_errors=True)
    try:
        tmp_dir.mkdir()
        stats, timings = predict_to_folder(
            name, target, predictor=predictor, settings=settings, folder=tmp_dir, progress=progress
        )
        vec, timings["vectorize"] = vectorize_folder(
            name,
            tmp_dir,
            packages=predictor.packages,
            connectivity=connectivity,
            progress=progress,
            vectorize=vectorize,
            client=client,
        )
        publish_folder(tmp_dir, final_dir)
    except BaseException as exc:
        full = disk_full_error(exc, final=final_dir)
        shutil.rmtree(tmp_dir, ignore_errors=True)
        if full is not None:
            raise full from exc
        raise
    finally:
        progress.scene_finished(name)
    return scene_result(
        name, target, final_dir=final_dir, stats=stats, polygons=vec.n_polygons, timings=timings
    )


def predict_to_folder(
    name: str,
    target: SceneWindow,
    *,
    predictor: Predictor,
    settings: PredictSettings,
    folder: Path,
    progress: Progress,
) -> tuple[PredictStats, dict[str, float]]:
    """Predict one scene into ``folder``: classes/confidence COGs, classes.qml, preview.png.

    Returns the prediction figures and the seconds of each step (predict, model, cog).
    """
    classes = predictor.package.metadata.class_infos()
    timings: dict[str, float] = {}
    grid = TileGrid.build(
        target.window, target.scene.grid.shape, settings.tile_px, settings.overlap_px
    )
    progress.scene_started(name, len(grid), target.window.size_px)
    raw_classes, raw_conf = folder / "classes.raw.tif", folder / "confidence.raw.tif"
    stats = predict_scene(
        target,
        predictor,
        settings,
        classes_path=raw_classes,
        confidence_path=raw_conf,
        on_tiles=lambda n: progress.tiles_done(name, n),
        grid=grid,
    )
    timings["predict"] = stats.seconds
    timings["model"] = stats.model_seconds

    progress.stage(name, "writing COGs")
    t = time.perf_counter()
    write_cog(raw_classes, folder / CLASSES_NAME, resampling="mode")
    write_cog(raw_conf, folder / CONFIDENCE_NAME, resampling="average")
    raw_classes.unlink()
    raw_conf.unlink()
    write_category_names(folder / CLASSES_NAME, classes)
    write_raster_qml(folder / "classes.qml", classes)
    write_preview(folder / CLASSES_NAME, folder / PREVIEW_NAME, aoi=target.aoi, title=name)
    timings["cog"] = time.perf_counter() - t
    return stats, timings


def vectorize_folder(
    name: str,
    folder: Path,
    *,
    packages: Sequence[ModelPackage],
    connectivity: Connectivity,
    progress: Progress,
    vectorize: VectorizeOptions | None = None,
    client: Client | SharedClient | None = None,
) -> tuple[VectorizeResult, float]:
    """Polygonize ``folder``'s classes.tif (with its confidence) into polygons.gpkg.

    ``client``: run the blocks on this Dask client (or a run's `SharedClient`) instead of
    a cluster of its own. Returns the result and its seconds.
    """
    progress.stage(name, "vectorizing")
    t = time.perf_counter()
    vec = vectorize_raster(
        folder / CLASSES_NAME,
        folder / POLYGONS_NAME,
        classes=packages[0].metadata.class_infos(),
        confidence_path=folder / CONFIDENCE_NAME,
        connectivity=connectivity,
        extra_attributes={
            "scene": name,
            "model_sha256": "+".join(p.sha256 for p in packages),
        },
        options=vectorize,
        client=client,
    )
    return vec, time.perf_counter() - t


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
        path=str(target.scene.path),
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
    )


def publish_folder(src: Path, dst: Path) -> None:
    """Move a finished temp folder onto its final name, replacing an older result."""
    old = dst.with_name(f".{dst.name}.old-{os.getpid()}")
    if dst.exists():
        dst.replace(old)
    src.replace(dst)
    shutil.rmtree(old, ignore_errors=True)


def write_mosaics(out: Path, results: Sequence[SceneResult], package: ModelPackage) -> list[str]:
    """A VRT mosaic of the class rasters of each group of >= 2 scenes sharing a CRS.

    ``mosaic.vrt`` when all scenes share one CRS, else ``mosaic_<crs>.vrt`` per group.
    """
    groups: dict[str, list[Path]] = defaultdict(list)
    for r in results:
        groups[r.crs].append(Path(r.outputs["classes"]))
    classes = package.metadata.class_infos()
    written = []
    for crs, paths in groups.items():
        if len(paths) < 2:
            continue
        tag = crs.replace(":", "").lower()
        name = "mosaic.vrt" if len(groups) == 1 else f"mosaic_{tag}.vrt"
        try:
            written.append(str(write_mosaic_vrt(paths, out / name, classes)))
        except OutputError:
            continue  # same CRS, different pixel size: no mosaic for this group
    return written


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


def write_run_json(
    settings: RunSettings,
    *,
    package: ModelPackage,
    predict_settings: PredictSettings,
    predictor: Predictor,
    results: Sequence[SceneResult],
    mosaics: Sequence[str],
    seconds: float,
) -> Path:
    """Record inputs, model, settings, versions, outputs and timings (atomically)."""
    doc: dict[str, Any] = {
        "geoseg_run": 1,
        "inputs": {
            "aoi": str(settings.aoi),
            "scenes": [str(p) for p in settings.scenes],
        },
        "model": _model_record(package),
        "ensemble": [_model_record(p) for p in predictor.packages[1:]],
        "settings": {
            **json.loads(settings.model_dump_json()),
            "resolved": {
                **asdict(predict_settings),
                "device": str(predictor.device),
                "tta_transforms": len(predictor.transforms),
            },
        },
        "versions": versions(),
        "scenes": [asdict(r) for r in results],
        "mosaics": list(mosaics),
        "timings_s": {"total": round(seconds, 3)},
    }
    path = settings.out / RUN_JSON
    tmp = path.with_name(f".{RUN_JSON}.partial-{os.getpid()}")
    try:
        tmp.write_text(json.dumps(doc, indent=2, default=str), encoding="utf-8")
        tmp.replace(path)
    except OSError as exc:
        full = disk_full_error(exc, final=path)
        tmp.unlink(missing_ok=True)
        raise full or OutputError(f"{path}: cannot write the run record ({exc})") from exc
    return path
