"""What a run will do, decided before any output exists: scenes, windows, checked inputs.

Scene inputs (files, folders, glob patterns) become scene files, each once; the AOI is read
and reprojected into each scene's CRS to find the scenes it touches and their pixel windows;
every scene is checked against every model package and the output folder is proven writable.
Whatever a user can get wrong fails here, with one line, before the first byte is written.
"""

from __future__ import annotations

import glob
import os
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

from geoseg.config import RunSettings
from geoseg.errors import AoiOutsideScenesError, OutputError, SceneError, option
from geoseg.inference.scene import SceneWindow
from geoseg.io.aoi import Aoi, aoi_in_crs, aoi_window, read_aoi
from geoseg.io.raster import SceneInfo, open_scene
from geoseg.io.staging import remove_stale_entries
from geoseg.models.package import (
    ModelPackage,
    SceneFacts,
    check_scene,
    load_package,
)

SCENE_SUFFIXES = (".tif", ".tiff", ".vrt", ".jp2", ".img")
GLOB_CHARS = frozenset("*?[")


def find_scene_files(inputs: Sequence[str | Path], newest: int | None = None) -> list[Path]:
    """Scene files from files, folders and glob patterns, each file once; the ``newest`` by mtime.

    Files keep their order (folders and globs sorted by name); a repeated file counts once.
    With ``newest`` the N most recently modified files are kept, in the same order. Missing
    paths, empty folders and patterns that match nothing are refused.
    """
    files: list[Path] = []
    for entry in inputs:
        text = str(entry)
        if GLOB_CHARS & set(text):
            # glob.glob: Path.glob takes no absolute patterns like /data/scenes/*.tif
            matched = sorted(Path(p) for p in glob.glob(text, recursive=True))  # noqa: PTH207
            if not matched:
                raise SceneError(
                    f"{text}: no scene matches this pattern; check the folder and the pattern"
                )
            files.extend(_scene_files(matched))
        else:
            files.extend(_scene_files([Path(text)]))
    unique = list(dict.fromkeys(files))
    if newest is not None:
        keep = set(sorted(unique, key=lambda p: p.stat().st_mtime_ns)[-newest:])
        unique = [p for p in unique if p in keep]
    return unique


def _scene_files(paths: Sequence[Path]) -> list[Path]:
    """Folders expanded into their raster files (sorted); refuse missing paths, empty folders."""
    files: list[Path] = []
    for p in paths:
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
            raise SceneError(
                f"{p}: scene not found; pass existing files or folders with {option('scenes')}"
            )
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
            f"pass a folder you can write to with {option('out')}"
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
