"""What ``--scenes`` names, sorted out: raster files and URLs, and STAC items, each once.

An entry is a raster file, a folder (its rasters and STAC item JSONs), a glob pattern, a STAC
Item / ItemCollection / ndjson file, an http(s) URL of either, an ``s3://`` URL or a GDAL
``/vsi...`` name. URLs stay text. A raster given twice, or an item given twice (same
collection and id), is run once.
"""

from __future__ import annotations

import glob
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

from geoseg.errors import SceneError, option
from geoseg.sources.hrefs import RASTER_SUFFIXES, STAC_SUFFIXES, href_suffix, is_remote, is_url
from geoseg.sources.items import StacItem, is_stac_file, read_items

SCENE_SUFFIXES = RASTER_SUFFIXES
GLOB_CHARS = frozenset("*?[")

SceneInput = str | StacItem
"""A raster href (path or URL, as text) or a STAC item."""


def scene_inputs(entries: Sequence[str | Path], newest: int | None = None) -> list[SceneInput]:
    """The rasters and items ``entries`` name, in order, each once; the ``newest`` N kept.

    Newest means file modification time for local rasters and the item datetime for items
    (remote rasters count as oldest). Missing paths, empty folders and patterns that match
    nothing are refused.
    """
    found: list[SceneInput] = []
    for entry in entries:
        found.extend(_entry_inputs(str(entry)))
    seen: set[tuple[str, ...]] = set()
    unique = []
    for item in found:
        if _identity(item) not in seen:
            seen.add(_identity(item))
            unique.append(item)
    if newest is not None:
        keep = {_identity(i) for i in sorted(unique, key=_timestamp)[-newest:]}
        unique = [i for i in unique if _identity(i) in keep]
    return unique


def find_scene_files(inputs: Sequence[str | Path], newest: int | None = None) -> list[Path]:
    """Local raster files only (training and tools that cannot read items or URLs)."""
    files = []
    for item in scene_inputs(inputs, newest):
        if not isinstance(item, str) or is_remote(item):
            raise SceneError(f"{_label(item)}: a local raster file is needed here")
        files.append(Path(item))
    return files


def _identity(item: SceneInput) -> tuple[str, ...]:
    if isinstance(item, StacItem):
        return ("item", *item.key)
    return ("raster", item if is_remote(item) else str(Path(item).resolve()))


def _timestamp(item: SceneInput) -> float:
    if isinstance(item, StacItem):
        text = (item.datetime or "").replace("Z", "+00:00")
        try:
            return datetime.fromisoformat(text).timestamp()
        except ValueError:
            return 0.0
    return 0.0 if is_remote(item) else Path(item).stat().st_mtime


def _label(item: SceneInput) -> str:
    return f"item {item.id}" if isinstance(item, StacItem) else item


def _entry_inputs(text: str) -> list[SceneInput]:
    if is_remote(text):
        is_stac = is_url(text) and (
            href_suffix(text) in STAC_SUFFIXES or href_suffix(text) not in RASTER_SUFFIXES
        )
        return list(read_items(text)) if is_stac else [text]
    if GLOB_CHARS & set(text):
        # glob.glob: Path.glob takes no absolute patterns like /data/scenes/*.tif
        matched = sorted(Path(p) for p in glob.glob(text, recursive=True))  # noqa: PTH207
        if not matched:
            raise SceneError(
                f"{text}: no scene matches this pattern; check the folder and the pattern"
            )
        return [i for p in matched for i in _path_inputs(p)]
    return _path_inputs(Path(text))


def _path_inputs(path: Path) -> list[SceneInput]:
    """A local file or folder: rasters as their path text, STAC files as their items."""
    if path.is_dir():
        rasters = sorted(f for f in path.iterdir() if f.suffix.lower() in SCENE_SUFFIXES)
        stac = sorted(
            f for f in path.iterdir() if f.suffix.lower() in STAC_SUFFIXES and is_stac_file(f)
        )
        if not rasters and not stac:
            raise SceneError(
                f"{path}: no scenes in this folder (looked for {', '.join(SCENE_SUFFIXES)} and "
                "STAC item .json files)"
            )
        return [str(f) for f in rasters] + [i for f in stac for i in read_items(str(f))]
    if path.exists():
        if path.suffix.lower() in STAC_SUFFIXES:
            return list(read_items(str(path)))
        return [str(path)]
    raise SceneError(
        f"{path}: scene not found; pass existing files or folders with {option('scenes')}"
    )
