"""The pure parts of the flow tasks: cache keys, stages on disk, retry policy."""

from __future__ import annotations

import dataclasses
import os
import shutil
from pathlib import Path

import pytest

pytest.importorskip("prefect", reason="Prefect is not installed: pip install 'geoseg[flows]'")

from prefect.states import Completed, Failed

from flows.jobs import KEY_FILE, SceneJob, SceneStage, scene_key
from flows.tasks import is_transient_io_error
from geoseg.config import RunSettings, resolve_predict_settings
from geoseg.errors import IncompatibleSceneError, SceneError
from geoseg.models.package import load_package


def _touch(path: Path, mtime_s: int) -> Path:
    path.write_bytes(b"x")
    os.utime(path, (mtime_s, mtime_s))
    return path


def test_scene_key_follows_results_not_speed(scene_512, demo_model: Path) -> None:
    package = load_package(demo_model)
    run = RunSettings(aoi=scene_512.aoi_path, scenes=[scene_512.image_path], models=[demo_model])

    def key(run: RunSettings = run, window=(0, 0, 64, 64), **predict_changes) -> str:
        settings = dataclasses.replace(resolve_predict_settings(run, package), **predict_changes)
        return scene_key(
            scene=scene_512.image_path,
            window=window,
            aoi_sha256="0" * 64,
            run=run,
            packages=[package],
            predict_settings=settings,
        )

    base = key()
    assert key() == base
    # speed-only settings do not change it
    assert key(batch_size=1, reader_threads=7) == base
    assert key(run.model_copy(update={"device": "cuda", "block_size": 99, "workers": 5})) == base
    # anything that changes the outputs does
    changed = [
        key(window=(0, 0, 64, 65)),
        key(tile_px=128),
        key(overlap_px=0),
        key(run.model_copy(update={"tta": True})),
        key(run.model_copy(update={"connectivity": 8})),
        key(run.model_copy(update={"min_area": 100.0})),
        key(run.model_copy(update={"simplify": 5.0})),
    ]
    assert len({base, *changed}) == len(changed) + 1


def test_scene_key_changes_when_the_scene_file_changes(tmp_path: Path, demo_model: Path) -> None:
    package = load_package(demo_model)
    scene = _touch(tmp_path / "s.tif", 100)
    run = RunSettings(aoi=scene, scenes=[scene], models=[demo_model])
    settings = resolve_predict_settings(run, package)

    def key() -> str:
        return scene_key(
            scene=scene,
            window=(0, 0, 1, 1),
            aoi_sha256="",
            run=run,
            packages=[package],
            predict_settings=settings,
        )

    before = key()
    os.utime(scene, (200, 200))
    assert key() != before


def test_scene_stage_reads_the_disk(tmp_path: Path) -> None:
    job = SceneJob(
        name="s", scene=tmp_path / "s.tif", aoi=tmp_path / "a.geojson", window=(0, 0, 1, 1),
        key="k" * 64, out=tmp_path,
    )  # fmt: skip
    assert job.stage() == SceneStage.NOTHING
    job.stage_dir.mkdir()
    (job.stage_dir / "classes.tif").write_bytes(b"")
    assert job.stage() == SceneStage.NOTHING  # confidence.tif missing
    (job.stage_dir / "confidence.tif").write_bytes(b"")
    assert job.stage() == SceneStage.PREDICTED
    (job.stage_dir / "polygons.gpkg").write_bytes(b"")
    assert job.stage() == SceneStage.VECTORIZED
    (job.stage_dir / KEY_FILE).write_text(job.key)
    shutil.copytree(job.stage_dir, job.final_dir)
    shutil.rmtree(job.stage_dir)
    assert job.stage() == SceneStage.PUBLISHED
    (job.final_dir / KEY_FILE).write_text("another key")  # made with other settings
    assert job.stage() == SceneStage.NOTHING


@pytest.mark.parametrize(
    ("error", "retried"),
    [
        (OSError("connection reset by peer"), True),
        (TimeoutError("read timed out"), True),
        (SceneError("a.tif: cannot read the scene"), False),  # a GeosegError, also an OSError
        (IncompatibleSceneError("a.tif: 3 bands, the model needs 4"), False),
        (ValueError("bug"), False),
    ],
)
def test_only_transient_io_errors_are_retried(error: Exception, retried: bool) -> None:
    assert is_transient_io_error(None, None, Failed(data=error)) is retried  # type: ignore[arg-type]


def test_a_completed_state_is_not_retried() -> None:
    assert is_transient_io_error(None, None, Completed(data=1)) is False  # type: ignore[arg-type]
