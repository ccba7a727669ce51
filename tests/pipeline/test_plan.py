"""Planning a run: scene inputs (files, folders, globs), output names, the AOI's scenes."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import shapely
from affine import Affine
from rasterio.crs import CRS

from geoseg.errors import AoiOutsideScenesError, OutputError, SceneError
from geoseg.geo.scene import SceneGrid
from geoseg.geo.window import PixelWindow
from geoseg.io.aoi import Aoi
from geoseg.io.raster import SceneInfo
from geoseg.pipeline.plan import plan_scenes, prepare_output_dir, scene_names
from geoseg.sources.inputs import find_scene_files


def touch(path: Path, mtime_s: int) -> Path:
    path.write_bytes(b"x")
    os.utime(path, (mtime_s, mtime_s))
    return path


def test_scene_files_from_files_folders_globs_and_newest(tmp_path: Path) -> None:
    folder = tmp_path / "scenes"
    folder.mkdir()
    a, b, c = (touch(folder / f"{n}.tif", t) for n, t in (("a", 300), ("b", 100), ("c", 200)))
    touch(folder / "notes.txt", 400)
    assert find_scene_files([folder]) == [a, b, c]
    assert find_scene_files([str(folder / "*.tif")]) == [a, b, c]
    assert find_scene_files([folder / "*.tif"]) == [a, b, c]  # as `geoseg run --scenes` passes it
    assert find_scene_files([c, str(folder / "[ab].tif")]) == [c, a, b]  # given order
    assert find_scene_files([folder, a]) == [a, b, c]  # a repeated scene counts once
    assert find_scene_files([folder], newest=2) == [a, c]
    with pytest.raises(SceneError, match=r"\*\.jp2: no scene matches"):
        find_scene_files([str(folder / "*.jp2")])
    with pytest.raises(SceneError, match="scene not found"):
        find_scene_files([folder / "d.tif"])
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(SceneError, match="no scenes in this folder"):
        find_scene_files([empty])


def scene(path: str, col_off_px: int = 0) -> SceneInfo:
    transform = Affine(10, 0, 500000 + 10 * col_off_px, 0, -10, 5001000)
    return SceneInfo(
        path=Path(path),
        grid=SceneGrid(CRS.from_epsg(32633), transform, 100, 100),
        band_count=4,
        dtypes=("uint16",) * 4,
        nodata=0,
    )


def test_scene_names_are_stems_made_unique() -> None:
    scenes = [scene("a/s.tif"), scene("b/s.tif"), scene("c/t.tif"), scene("d/s.vrt")]
    assert scene_names(scenes) == ["s", "s_2", "t", "s_3"]


def test_plan_keeps_the_scenes_the_aoi_touches_with_their_windows() -> None:
    aoi = Aoi(
        Path("aoi.geojson"), shapely.box(500100, 5000100, 500900, 5000500), CRS.from_epsg(32633)
    )
    planned = plan_scenes(aoi, [scene("left.tif"), scene("far.tif", col_off_px=1000)])
    assert [name for name, _ in planned] == ["left"]
    ((_, target),) = planned
    assert target.window == PixelWindow(50, 10, 40, 80)
    assert target.aoi.equals(aoi.geometry)
    with pytest.raises(AoiOutsideScenesError, match="does not cover any pixel of the scenes"):
        plan_scenes(aoi, [scene("far.tif", col_off_px=1000)])


def test_output_folder_is_created_and_must_be_writable(tmp_path: Path) -> None:
    out = tmp_path / "new" / "out"
    prepare_output_dir(out)
    assert out.is_dir() and not list(out.iterdir())  # the write probe is gone
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(OutputError, match="not writable"):
        prepare_output_dir(blocker / "out")
