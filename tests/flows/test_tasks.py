"""The pure parts of the flow tasks: cache keys (files, STAC/VRT scenes), stages on disk, job
records, retry policy, the flow's STAC settings."""

from __future__ import annotations

import dataclasses
import datetime as dt
import itertools
import json
import logging
import os
import pickle
import shutil
from pathlib import Path

import pytest
from affine import Affine
from pydantic import ValidationError
from rasterio.crs import CRS
from shapely.geometry import box

pytest.importorskip("prefect", reason="Prefect is not installed: pip install 'geoseg[flows]'")

from prefect.states import Completed, Failed

from flows.jobs import (
    INPUTS_DIR_NAME,
    KEY_FILE,
    SceneJob,
    SceneStage,
    file_fingerprint,
    read_key_file,
    scene_identity,
    scene_jobs,
    scene_key,
    write_key_file,
)
from flows.segment import SegmentSettings, days_window
from flows.tasks import forwarded_logs, is_empty_search, is_transient_io_error
from geoseg.config import RunSettings, StacQuery, resolve_predict_settings
from geoseg.errors import IncompatibleSceneError, SceneError, StacError
from geoseg.geo.scene import SceneGrid
from geoseg.geo.window import PixelWindow
from geoseg.inference.scene import SceneWindow
from geoseg.inference.settings import PredictSettings
from geoseg.io.pixels import BandConversion, MaskRule, ReadPlan
from geoseg.io.raster import SceneInfo
from geoseg.models.package import load_package
from geoseg.sources.hrefs import redact


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
            scene={"file": file_fingerprint(scene_512.image_path)},
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
            scene={"file": file_fingerprint(scene)},
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


# --------------------------------------------------------------------------- STAC / VRT scenes

SIGNED = "https://data.example.com/T33/B04.tif?sig=s3cr3t"
_VRT_TIMES = itertools.count(1_700_000_000 * 10**9, 10**9)


def _vrt_target(
    tmp_path: Path,
    *,
    vrt: str = "a.vrt",
    hrefs: tuple[str, ...] = (SIGNED,),
    plan: ReadPlan | None = None,
    x0: float = 500000.0,
) -> SceneWindow:
    """A SceneWindow read through a VRT written just now (a new mtime every time)."""
    path = tmp_path / vrt
    path.write_text("<VRTDataset/>")
    written = next(_VRT_TIMES)
    os.utime(path, ns=(written, written))
    grid = SceneGrid(CRS.from_epsg(32633), Affine(10, 0, x0, 0, -10, 5800000), 64, 64)
    scene = SceneInfo(path, grid, 5, ("uint16",) * 5, 0.0, label="item A")
    source = {
        "kind": "stac-item",
        "item": "A",
        "collection": "sentinel-2-l2a",
        "grid": {"resampling": ["nearest"]},
    }
    plan = plan or ReadPlan((1, 2, 3, 4), (BandConversion(1.0, -1000.0),) * 4, MaskRule(5, (9,)))
    return SceneWindow(scene, PixelWindow(0, 0, 64, 64), box(0, 0, 1, 1), plan, source, hrefs)


def test_a_vrt_scene_is_keyed_by_its_sources_not_by_the_vrt_file(tmp_path: Path) -> None:
    band = _touch(tmp_path / "B08.tif", 100)
    base = _vrt_target(tmp_path, hrefs=(SIGNED, str(band)))

    def identity(target: SceneWindow) -> str:
        return json.dumps(scene_identity(target, vrt=True), sort_keys=True)

    first, written = identity(base), base.scene.path.stat().st_mtime_ns
    rewritten = _vrt_target(tmp_path, hrefs=(SIGNED, str(band)))  # the next run's VRT
    assert rewritten.scene.path.stat().st_mtime_ns != written
    assert identity(rewritten) == first
    assert "s3cr3t" not in first and "data.example.com" not in first  # remote hrefs hashed

    plan = base.plan
    assert plan is not None
    changed = [
        _vrt_target(tmp_path, hrefs=(SIGNED + "x", str(band))),  # another asset
        _vrt_target(tmp_path, hrefs=(SIGNED, str(band)), plan=dataclasses.replace(plan, mask=None)),
        _vrt_target(
            tmp_path,
            hrefs=(SIGNED, str(band)),
            plan=dataclasses.replace(plan, conversions=(BandConversion(1.0, 0.0),) * 4),
        ),
        _vrt_target(tmp_path, hrefs=(SIGNED, str(band)), x0=500010.0),  # another grid
    ]
    assert len({first, *(identity(t) for t in changed)}) == len(changed) + 1
    os.utime(band, (200, 200))  # a local band file changed
    assert identity(_vrt_target(tmp_path, hrefs=(SIGNED, str(band)))) != first
    # a file read as it is keeps its file fingerprint
    plain = scene_identity(base, vrt=False)
    assert plain["file"] == file_fingerprint(base.scene.path)


def test_a_scene_job_pickles_whole_and_shows_redacted_hrefs_as_json(tmp_path: Path) -> None:
    target = _vrt_target(tmp_path)
    (job,) = scene_jobs_for(tmp_path, target)
    assert job.plan == target.plan and job.hrefs == (SIGNED,) and job.label == "item A"
    assert pickle.loads(pickle.dumps(job)) == job
    text = job.model_dump_json()
    assert "s3cr3t" not in text and "B04.tif?<redacted>" in text
    restored = SceneJob.model_validate_json(text)
    assert restored.plan == job.plan and restored.source == job.source


def scene_jobs_for(tmp_path: Path, target: SceneWindow) -> list[SceneJob]:
    """`scene_jobs` of one VRT target, its VRT moved to OUT/.geoseg-inputs."""
    aoi = tmp_path / "aoi.geojson"
    aoi.write_text("{}")
    run = RunSettings(aoi=aoi, scenes=["x"], models=[Path("m.geoseg")], out=tmp_path / "out")
    package = _FakePackage()
    settings = PredictSettings(tile_px=64, overlap_px=8, batch_size=1)
    final = tmp_path / "out" / INPUTS_DIR_NAME / target.scene.path.name
    jobs = scene_jobs(
        run,
        [("A", target)],
        packages=[package],  # type: ignore[list-item]
        predict_settings=settings,
        vrts={target.scene.path: final},
    )
    assert jobs[0].scene == final
    return jobs


@dataclasses.dataclass(frozen=True)
class _FakePackage:
    sha256: str = "0" * 64


def test_a_published_scene_counts_only_while_every_file_it_listed_is_there(
    tmp_path: Path,
) -> None:
    job = SceneJob(
        name="s", scene=tmp_path / "s.tif", aoi=tmp_path / "a.geojson", window=(0, 0, 1, 1),
        key="k" * 64, out=tmp_path,
    )  # fmt: skip
    job.final_dir.mkdir()
    for name in ("classes.tif", "confidence.tif", "polygons.gpkg", "preview.png"):
        (job.final_dir / name).write_bytes(b"")
    write_key_file(job.final_dir, job.key)
    assert read_key_file(job.final_dir / KEY_FILE) == (
        job.key,
        ("classes.tif", "confidence.tif", "polygons.gpkg", "preview.png"),
    )
    assert job.stage() == SceneStage.PUBLISHED
    (job.final_dir / "preview.png").unlink()  # deleted by a user
    assert job.stage() == SceneStage.NOTHING


# --------------------------------------------------------------------------- flow settings


def test_stac_days_is_a_window_ending_at_the_run_time() -> None:
    stac = StacQuery(api="https://stac.example.com", collections=["sentinel-2-l2a"])
    settings = SegmentSettings(stac=stac, stac_days=3)
    end = dt.datetime(2026, 6, 15, 3, 0, 0, 123456, tzinfo=dt.UTC)
    query = settings.stac_query(end)
    assert query is not None and query.datetime == "2026-06-12T03:00:00Z/2026-06-15T03:00:00Z"
    assert SegmentSettings(stac=stac).stac_query(end) == stac  # no window: as given
    assert days_window(0.5, dt.datetime(2026, 1, 1, tzinfo=dt.UTC)) == (
        "2025-12-31T12:00:00Z/2026-01-01T00:00:00Z"
    )
    with pytest.raises(ValidationError, match="stac_days needs a STAC search"):
        SegmentSettings(stac_days=3)
    with pytest.raises(ValidationError, match="not both"):
        SegmentSettings(stac=stac.model_copy(update={"datetime": "2026-01-01"}), stac_days=3)
    assert SegmentSettings(aoi_layer="fields").aoi_layer == "fields"


def test_the_search_summary_reaches_the_run_log() -> None:
    seen: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            seen.append(f"{record.levelname} {record.getMessage()}")

    target = logging.getLogger("test-run-log")
    target.addHandler(Collect())
    target.setLevel(logging.INFO)
    search = logging.getLogger("geoseg.sources.search")
    with forwarded_logs(["geoseg.sources.search"], target):
        search.info("api: 3 item(s) of s2 intersect the AOI; using 2")
        search.debug("not this")
    search.info("not after")
    assert seen == ["INFO api: 3 item(s) of s2 intersect the AOI; using 2"]


def test_only_the_no_items_refusal_of_the_search_counts_as_empty() -> None:
    stac = StacQuery(api="https://u:p@stac.example.com/v1?token=x", collections=["c"])
    api = redact(stac.api)
    assert is_empty_search(StacError(f"{api}: no items of c intersect the AOI; widen"), stac)
    assert not is_empty_search(StacError(f"{api}: the STAC API refused the search"), stac)
    assert not is_empty_search(StacError(f"{api}: no items of c intersect the AOI"), None)
