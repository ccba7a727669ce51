"""Bad input and faults: each gets one clear line and a non-zero exit, and nothing is lost.

Every case builds its bad input from small synthetic data in its own folder and runs
`geoseg run` into an output folder that already holds an earlier good result (a copy of the
session's `run_256`). Then it checks that:

- the exit code is 2 (a `GeosegError`);
- stderr is exactly one line, ``error: ...``, naming the offending file (or option) and the
  problem; no traceback anywhere;
- the output folder has no new entry (no scene folder, no run.json, no temp folder) and the
  earlier result is byte-identical.

The table (`tests.support.battery.CASES`) is data: a builder turns the good inputs into a
`BadRun` (inputs and settings of one run, as `RunSettings` keywords or CLI arguments), so the
same cases drive the Prefect flow (`tests/flows/test_battery.py`) and the library's
`geoseg.pipeline.run.run`. The table runs the CLI in this process with stderr captured at
file-descriptor level (a fresh process costs ~5 s of imports per case); a few cases also go
through the installed console script. Faults that need control of the process itself (a
file-size limit, dropped privileges, SIGKILL) and the AOI that is repaired rather than refused
run the console script, after the table.

Run with ``-s`` to see each case's message (lines starting with ``BATTERY``).
"""

from __future__ import annotations

import ctypes
import os
import resource
import shutil
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyogrio.raw
import pytest
import rasterio

from tests.support.battery import (
    CASES,
    BadRun,
    Case,
    GoodInputs,
    error_line,
    good,
    run_in_process,
    scene_box,
    snapshot,
    trap_marker,
)
from tests.support.cli import geoseg_cli, start_run_until_predicting, write_geojson

Completed = subprocess.CompletedProcess[str]


def report(case_id: str, proc: Completed, line: str) -> None:
    print(f"\nBATTERY | {case_id} | exit {proc.returncode} | {line}")


@pytest.fixture()
def inputs(tmp_path: Path, scene_256, demo_model: Path) -> GoodInputs:
    work = tmp_path / "inputs"
    work.mkdir()
    return GoodInputs(scene_256.image_path, scene_256.aoi_path, demo_model, work)


@pytest.fixture()
def earlier(tmp_path: Path, run_256: Path) -> tuple[Path, dict[str, str]]:
    """An output folder holding a copy of an earlier good result, and its snapshot."""
    out = tmp_path / "out"
    shutil.copytree(run_256, out)
    return out, snapshot(out)


def check_refused(case: Case, run: BadRun, proc: Completed, out: Path, before: dict) -> str:
    """All checks of a refused case; returns its error line."""
    line = error_line(proc, names=run.names, says=case.says)
    assert snapshot(out) == before
    if run.out is not None:
        assert not run.out.exists()
    return line


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_is_refused_and_nothing_is_lost(
    case: Case,
    inputs: GoodInputs,
    earlier: tuple[Path, dict[str, str]],
    capfd: pytest.CaptureFixture[str],
    pytestconfig: pytest.Config,
) -> None:
    out, before = earlier
    run = case.build(inputs)
    proc = run_in_process(run.cli_args(out), capfd)
    line = check_refused(case, run, proc, out, before)
    assert not trap_marker(inputs).exists(), "something unpickled the package"
    if pytestconfig.getoption("capture") == "no":  # -s: show the message (capfd holds it)
        with capfd.disabled():
            report(case.id, proc, line)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_the_library_raises_the_same_error(
    case: Case, inputs: GoodInputs, earlier: tuple[Path, dict[str, str]]
) -> None:
    """`geoseg.pipeline.run` (what the CLI and flows call) raises a `GeosegError` that says it."""
    from geoseg.config import RunSettings
    from geoseg.errors import GeosegError
    from geoseg.pipeline.run import run as run_pipeline

    out, before = earlier
    run = case.build(inputs)
    with pytest.raises(GeosegError) as raised:
        run_pipeline(RunSettings(**run.run_settings(out)))
    message = str(raised.value)
    assert run.names in message and all(fragment in message for fragment in case.says), message
    assert snapshot(out) == before


CONSOLE_SCRIPT_CASES = [c for c in CASES if c.id in ("scene-truncated", "model-with-pickle")]


@pytest.mark.parametrize("case", CONSOLE_SCRIPT_CASES, ids=[c.id for c in CONSOLE_SCRIPT_CASES])
def test_the_console_script_refuses_the_same_way(
    case: Case, inputs: GoodInputs, earlier: tuple[Path, dict[str, str]]
) -> None:
    """A few cases through the installed `geoseg` script too: a fresh process, real exit."""
    out, before = earlier
    run = case.build(inputs)
    proc = geoseg_cli(*run.cli_args(out))
    check_refused(case, run, proc, out, before)
    assert not trap_marker(inputs).exists(), "something unpickled the package"


# ---------------------------------------------------------------------------------------------
# Faults that need control of the process


def test_self_intersecting_aoi_is_repaired_with_a_warning(
    inputs: GoodInputs, earlier: tuple[Path, dict[str, str]]
) -> None:
    out, _ = earlier
    box, crs = scene_box(inputs)
    left, bottom, right, top = box.buffer(-300).bounds
    bowtie = {
        "type": "Polygon",
        "coordinates": [
            [[left, bottom], [right, top], [right, bottom], [left, top], [left, bottom]]
        ],
    }
    aoi = write_geojson(inputs.work / "bowtie.geojson", [bowtie], crs=crs)
    proc = geoseg_cli(*good(inputs, aoi, aoi=aoi).cli_args(out))
    assert proc.returncode == 0, proc.stderr
    warnings = [line for line in proc.stderr.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1, proc.stderr
    assert str(aoi) in warnings[0] and "Self-intersection" in warnings[0]
    assert "make_valid into 2 polygon(s)" in warnings[0]
    assert "Traceback" not in proc.stderr
    assert (out / "scene" / "classes.tif").is_file() and (out / "run.json").is_file()
    assert not [p for p in out.iterdir() if "partial" in p.name or ".old-" in p.name]
    report("aoi-self-intersecting (repaired, run succeeds)", proc, warnings[0])


def file_size_limit(limit_bytes: int) -> Callable[[], None]:
    """A preexec_fn: writes past ``limit_bytes`` fail with EFBIG (SIGXFSZ ignored)."""

    def limit() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit_bytes, limit_bytes))

    return limit


@pytest.mark.parametrize(
    ("limit_kib", "stage"), [(4, "rasters"), (64, "polygons")], ids=["rasters", "polygons"]
)
def test_disk_full_is_one_line_and_leaves_nothing(
    limit_kib: int, stage: str, inputs: GoodInputs, earlier: tuple[Path, dict[str, str]]
) -> None:
    """A file-size limit stands in for a full disk: the same EFBIG/ENOSPC path through GDAL
    and SQLite. The limit is sized so that the rasters, or only the polygons, cannot be
    written (the earlier result's files show the sizes)."""
    out, before = earlier
    sizes = {p.name: p.stat().st_size for p in (out / "scene").iterdir()}
    if stage == "rasters":
        assert sizes["classes.tif"] > limit_kib * 1024, sizes
    else:
        assert max(sizes["classes.tif"], sizes["confidence.tif"]) < limit_kib * 1024, sizes
        assert sizes["polygons.gpkg"] > limit_kib * 1024, sizes
    run = good(inputs, out / "scene")
    proc = geoseg_cli(*run.cli_args(out), preexec_fn=file_size_limit(limit_kib * 1024))
    # libtiff writes its own low-level lines ("_tiffWriteProc: File too large.") straight to
    # the C stderr before GDAL raises; geoseg's own output is the one error line after them.
    own = "\n".join(line for line in proc.stderr.splitlines() if not line.startswith("_tiff"))
    line = error_line(
        subprocess.CompletedProcess(proc.args, proc.returncode, proc.stdout, own),
        names=str(out / "scene"),
        says=("disk full or file too large",),
    )
    assert snapshot(out) == before
    report(f"disk-full-{stage} (RLIMIT_FSIZE {limit_kib} KiB)", proc, line)


PR_CAPBSET_DROP = 24
FILE_MODE_OVERRIDES = {"CAP_DAC_OVERRIDE": 1, "CAP_DAC_READ_SEARCH": 2, "CAP_FOWNER": 3}


def root_obeys_file_modes() -> Callable[[], None]:
    """A preexec_fn for root: drop the capabilities that let root ignore file modes.

    They leave the bounding set of the child only, so the `geoseg` it starts is a root
    process for which chmod 500 means read-only, as for anyone else.
    """
    libc = ctypes.CDLL(None, use_errno=True)

    def drop() -> None:
        for cap in FILE_MODE_OVERRIDES.values():
            if libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0:
                raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP) failed")

    return drop


def test_output_folder_not_writable(
    inputs: GoodInputs, earlier: tuple[Path, dict[str, str]]
) -> None:
    """An existing output folder, holding an earlier result, that the user may not write to.

    chmod 500; as root, which ignores file modes, the run drops that privilege first.
    """
    out, before = earlier
    root = os.geteuid() == 0
    out.chmod(0o500)
    try:
        run = good(inputs, out)
        proc = geoseg_cli(*run.cli_args(out), preexec_fn=root_obeys_file_modes() if root else None)
    except OSError as exc:  # raised here when the child's preexec_fn fails
        pytest.skip(f"cannot drop root's file-mode override here ({exc})")
    finally:
        out.chmod(0o755)
    line = error_line(proc, names=str(out), says=("not writable", "Permission denied"))
    assert snapshot(out) == before
    report(
        f"out-not-writable (chmod 500{', root without CAP_DAC_OVERRIDE' if root else ''})",
        proc,
        line,
    )


def read_band(path: Path) -> np.ndarray:
    with rasterio.open(path) as ds:
        return ds.read(1)


def polygon_areas(path: Path) -> list[tuple[int, float]]:
    """(class_id, area_m2) of every polygon, sorted: equal for equal polygonizations."""
    _, _, _, fields = pyogrio.raw.read(
        path, layer="landcover", columns=["class_id", "area_m2"], read_geometry=False
    )
    return sorted(zip(fields[0].tolist(), np.round(fields[1], 3).tolist(), strict=True))


@pytest.mark.slow
def test_killed_run_then_rerun_equals_an_uninterrupted_run(tmp_path: Path, demo_model: Path):
    """SIGKILL mid-prediction leaves only a temp folder; the rerun removes it and completes."""
    from geoseg.synthetic import write_synthetic_scene

    # large enough that prediction lasts well over a second after its files appear
    scene = write_synthetic_scene(tmp_path / "in", size_px=1536, seed=13)
    args = [
        "run", "--aoi", scene.aoi_path, "--scenes", scene.image_path, "--model", demo_model,
        "--device", "cpu", "--workers", "0",
        "--tile-size", "128", "--overlap", "16", "--batch-size", "2",
    ]  # fmt: skip
    out = tmp_path / "out"
    proc = start_run_until_predicting(args, out)
    time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait(timeout=60) == -signal.SIGKILL
    left = sorted(p.name for p in out.iterdir())
    assert left == [f".scene.partial-{proc.pid}"], left  # no final name, no run.json

    geoseg_cli(*args, "--out", out, check=True)  # rerun into the same folder
    assert sorted(p.name for p in out.iterdir()) == ["run.json", "scene"]
    clean = tmp_path / "clean"
    geoseg_cli(*args, "--out", clean, check=True)
    for name in ("classes.tif", "confidence.tif"):
        np.testing.assert_array_equal(
            read_band(out / "scene" / name), read_band(clean / "scene" / name)
        )
    rerun_polygons = polygon_areas(out / "scene" / "polygons.gpkg")
    assert rerun_polygons == polygon_areas(clean / "scene" / "polygons.gpkg")
    assert len(rerun_polygons) > 10
