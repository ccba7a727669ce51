"""What a run will do, decided before any output exists: scenes, windows, checked inputs.

Scene inputs (files, folders, globs, STAC items and searches, URLs) become resolved scenes,
each once (`geoseg.sources`: bands, units, mask, grid, checked against the model package); the
AOI is read and reprojected into each scene's CRS to find the scenes it touches and their pixel
windows; the output folder is proven writable.
Whatever a user can get wrong fails here, with one line, before the first byte is written.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

from rasterio.crs import CRS

from geoseg.config import RunSettings
from geoseg.errors import AoiOutsideScenesError, OutputError, option
from geoseg.geo.scene import SceneGrid
from geoseg.inference.scene import SceneWindow
from geoseg.io.aoi import Aoi, aoi_in_crs, aoi_window, read_aoi, widen_aoi
from geoseg.io.raster import SceneInfo, open_scene
from geoseg.io.staging import remove_stale_entries
from geoseg.models.package import ModelPackage, load_package
from geoseg.mosaic.grid import aoi_margin
from geoseg.sources.inputs import SceneInput, scene_inputs
from geoseg.sources.items import StacItem
from geoseg.sources.resolve import ResolvedScene, resolve_inputs
from geoseg.sources.search import search_items

log = logging.getLogger(__name__)


def scene_names(scenes: Sequence[SceneInfo]) -> list[str]:
    """Output folder names: file stems, made unique with a counter where stems collide."""
    seen: dict[str, int] = defaultdict(int)
    names = []
    for s in scenes:
        seen[s.name] += 1
        names.append(s.name if seen[s.name] == 1 else f"{s.name}_{seen[s.name]}")
    return names


def plan_scenes(
    aoi: Aoi, scenes: Sequence[SceneInfo], resolved: Sequence[ResolvedScene] | None = None
) -> list[tuple[str, SceneWindow]]:
    """The scenes the AOI touches, each with its pixel window, the AOI in its CRS and, with
    ``resolved``, how its pixels are read and what run.json records about it."""
    planned = []
    names = [r.name for r in resolved] if resolved else scene_names(scenes)
    for i, (name, scene) in enumerate(zip(names, scenes, strict=True)):
        geom = aoi_in_crs(aoi, scene.grid.crs)
        window = aoi_window(geom, scene.grid)
        if window is None:
            continue
        if resolved:
            r = resolved[i]
            target = SceneWindow(scene, window, geom, r.plan, r.record, r.hrefs)
        else:
            target = SceneWindow(scene, window, geom)
        planned.append((name, target))
    if not planned:
        bounds = ", ".join(f"{v:.6g}" for v in aoi.geometry.bounds)
        listed = ", ".join(s.label or s.path.name for s in scenes)
        raise AoiOutsideScenesError(
            f"{aoi.path}: the AOI (bounds {bounds} in {aoi.crs.to_string()}) does not cover any "
            f"pixel of the scenes ({listed}); check the AOI's CRS or pass the scenes that cover it"
        )
    return planned


def widen_for_mosaic(
    planned: Sequence[tuple[str, SceneWindow]], grid: SceneGrid
) -> list[tuple[str, SceneWindow]]:
    """The scenes the mosaic reprojects predicted a little beyond the AOI (`aoi_margin`), so
    the mosaic has no nodata fringe along the AOI's edge; scenes on its pixel lines as planned
    (the mosaic's own AOI mask still cuts at the AOI)."""
    widened = []
    for name, target in planned:
        margin = aoi_margin(grid, target.scene.grid)
        if margin:
            aoi = widen_aoi(target.aoi, margin)
            window = aoi_window(aoi, target.scene.grid) or target.window
            target = dataclasses.replace(target, window=window, aoi=aoi, aoi_margin=margin)
        widened.append((name, target))
    return widened


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


def run_inputs(settings: RunSettings, aoi: Aoi) -> list[SceneInput]:
    """The rasters and items of a run: ``--scenes`` entries, then the STAC search's items."""
    inputs = scene_inputs(settings.scenes, settings.newest) if settings.scenes else []
    if settings.stac is not None:
        found = search_items(settings.stac.search(), aoi_in_crs(aoi, CRS.from_epsg(4326)))
        known = {i.key for i in inputs if isinstance(i, StacItem)}
        inputs += [i for i in found.items if i.key not in known]
    return inputs


def check_inputs(
    settings: RunSettings, inputs_dir: Path
) -> tuple[list[ModelPackage], list[tuple[str, SceneWindow]]]:
    """Read the AOI and model packages, resolve and plan the scenes, check them all.

    Everything a user can get wrong in the inputs fails here, before any output exists.
    Scenes read through a VRT (STAC items, remote rasters, other pixel sizes) get it written
    into ``inputs_dir``; the first package's bands and units decide how every scene is read
    (ensemble members share their inputs: `check_ensemble`).
    """
    aoi = read_aoi(settings.aoi, layer=settings.aoi_layer)
    packages = [load_package(p) for p in settings.models]
    resolved = resolve_inputs(
        run_inputs(settings, aoi), packages[0], settings.source_options(), inputs_dir
    )
    for r in resolved:
        for warning in r.warnings:
            log.warning(warning)
    scenes = [dataclasses.replace(open_scene(r.path), label=r.label) for r in resolved]
    return packages, plan_scenes(aoi, scenes, resolved)
