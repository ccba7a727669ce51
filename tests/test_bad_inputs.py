"""Bad input and faults: each gets one clear line and a non-zero exit, and nothing is lost.

Every case builds its bad input from small synthetic data in its own folder and runs
`geoseg run` into an output folder that already holds an earlier good result (a copy of the
session's `run_256`). Then it checks that:

- the exit code is 2 (a `GeosegError`);
- stderr is exactly one line, ``error: ...``, naming the offending file (or option) and the
  problem; no traceback anywhere;
- the output folder has no new entry (no scene folder, no run.json, no temp folder) and the
  earlier result is byte-identical.

The table (`CASES`) is data: a builder turns the good inputs into a `BadRun` (inputs and
settings of one run, as `RunSettings` keywords or CLI arguments), so the same cases can drive
the Prefect flow once it exists; they already drive the library's `geoseg.pipeline.run`.
The table runs the CLI in this process with stderr captured at file-descriptor level (a fresh
process costs ~5 s of imports per case); a few cases also go through the installed console
script. Faults that need control of the process itself (a file-size limit, dropped
privileges, SIGKILL) and the AOI that is repaired rather than refused run the console script,
after the table.

Run with ``-s`` to see each case's message (lines starting with ``BATTERY``).
"""

from __future__ import annotations

import ctypes
import dataclasses
import hashlib
import os
import pickle
import resource
import shutil
import signal
import subprocess
import sys
import time
import warnings
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyogrio.raw
import pytest
import rasterio
import shapely
from affine import Affine
from shapely import affinity
from shapely.geometry import mapping

from geoseg.cli import app
from tests.conftest import geoseg_cli, write_geojson

Completed = subprocess.CompletedProcess[str]

# ---------------------------------------------------------------------------------------------
# The table


@dataclass(frozen=True)
class GoodInputs:
    """The good inputs a case starts from, and an empty folder for its bad files."""

    scene: Path
    aoi: Path
    model: Path
    work: Path


@dataclass(frozen=True)
class BadRun:
    """One run's inputs and settings; ``names`` is what its error line must name.

    ``settings`` are `geoseg.config.RunSettings` fields beyond the inputs (``tile_size=32``):
    `run_settings` gives them to the library or a flow, `cli_args` to the command line.
    """

    aoi: Path
    scene: Path
    model: Path
    names: str
    settings: tuple[tuple[str, object], ...] = ()
    out: Path | None = None
    """None: the folder holding the earlier result."""

    def run_settings(self, out: Path) -> dict[str, object]:
        """Keyword arguments of `geoseg.config.RunSettings` for this run."""
        return {
            "aoi": self.aoi, "scenes": [self.scene], "models": [self.model],
            "out": self.out or out, "device": "cpu", "workers": 0, **dict(self.settings),
        }  # fmt: skip

    def cli_args(self, out: Path) -> list[str]:
        """`geoseg run` arguments for the same run."""
        extra = [a for k, v in self.settings for a in (f"--{k.replace('_', '-')}", str(v))]
        return [
            "run", "--aoi", str(self.aoi), "--scenes", str(self.scene),
            "--model", str(self.model), "--out", str(self.out or out),
            "--device", "cpu", "--workers", "0", *extra,
        ]  # fmt: skip


@dataclass(frozen=True)
class Case:
    """A named bad input: how to build it and what the error line must say about it."""

    id: str
    build: Callable[[GoodInputs], BadRun]
    says: tuple[str, ...]


def good(inputs: GoodInputs, names: Path | str, **changes: object) -> BadRun:
    """The good run with some inputs or settings changed."""
    run = BadRun(inputs.aoi, inputs.scene, inputs.model, names=str(names))
    return dataclasses.replace(run, **changes)  # type: ignore[arg-type]


# --- AOI ---------------------------------------------------------------------------------------


def aoi_missing(g: GoodInputs) -> BadRun:
    aoi = g.work / "nope.geojson"
    return good(g, aoi, aoi=aoi)


def aoi_is_a_raster(g: GoodInputs) -> BadRun:
    return good(g, g.scene, aoi=g.scene)


def aoi_is_a_table(g: GoodInputs) -> BadRun:
    aoi = g.work / "aoi.csv"
    aoi.write_text("id,name\n1,field\n")
    return good(g, aoi, aoi=aoi)


def aoi_is_garbage(g: GoodInputs) -> BadRun:
    aoi = g.work / "aoi.geojson"
    aoi.write_bytes(b"\x00\x01 this is not json")
    return good(g, aoi, aoi=aoi)


def aoi_without_crs(g: GoodInputs) -> BadRun:
    aoi = g.work / "aoi.shp"
    box = np.array([shapely.to_wkb(shapely.box(0, 0, 1, 1))], dtype=object)
    with warnings.catch_warnings():  # pyogrio warns about exactly what this case is for
        warnings.simplefilter("ignore", UserWarning)
        pyogrio.raw.write(
            aoi, box, [], [], geometry_type="Polygon", crs=None, driver="ESRI Shapefile"
        )
    assert not aoi.with_suffix(".prj").exists()
    return good(g, aoi, aoi=aoi)


def aoi_without_features(g: GoodInputs) -> BadRun:
    aoi = write_geojson(g.work / "aoi.geojson", [])
    return good(g, aoi, aoi=aoi)


def aoi_with_null_geometry(g: GoodInputs) -> BadRun:
    aoi = write_geojson(g.work / "aoi.geojson", [None])
    return good(g, aoi, aoi=aoi)


def _scene_box(g: GoodInputs) -> tuple[shapely.Polygon, str]:
    with rasterio.open(g.scene) as ds:
        return shapely.box(*ds.bounds), ds.crs.to_string()


def aoi_outside_every_scene(g: GoodInputs) -> BadRun:
    box, crs = _scene_box(g)
    far = affinity.translate(box, 50_000, 0)
    aoi = write_geojson(g.work / "aoi.geojson", [mapping(far)], crs=crs)
    return good(g, aoi, aoi=aoi)


def aoi_touching_the_scene_edge(g: GoodInputs) -> BadRun:
    """A polygon that shares the scene's right edge: the intersection has no area."""
    box, crs = _scene_box(g)
    _, bottom, right, top = box.bounds
    beside = shapely.box(right, bottom, right + 500, top)
    assert beside.intersection(box).geom_type == "LineString"
    aoi = write_geojson(g.work / "aoi.geojson", [mapping(beside)], crs=crs)
    return good(g, aoi, aoi=aoi)


# --- scenes ------------------------------------------------------------------------------------


def rewrite_scene(
    g: GoodInputs, name: str, *, profile: dict | None = None, bands: list[int] | None = None
) -> Path:
    """A copy of the good scene with some profile entries changed (and maybe fewer bands)."""
    dst = g.work / name
    with rasterio.open(g.scene) as src:
        data = src.read(bands)
        new = {**src.profile, "count": data.shape[0], **(profile or {})}
    with rasterio.open(dst, "w", **new) as out:
        out.write(data.astype(new["dtype"]))
    return dst


def scene_truncated(g: GoodInputs) -> BadRun:
    """A valid GeoTIFF cut to half its size, as an interrupted copy leaves it."""
    scene = g.work / "truncated.tif"
    shutil.copyfile(g.scene, scene)
    with scene.open("r+b") as f:
        f.truncate(scene.stat().st_size // 2)
    return good(g, scene, scene=scene)


def scene_not_a_tiff(g: GoodInputs) -> BadRun:
    scene = g.work / "broken.tif"
    scene.write_bytes(b"II*\x00 truncated")
    return good(g, scene, scene=scene)


def scene_missing(g: GoodInputs) -> BadRun:
    scene = g.work / "missing.tif"
    return good(g, scene, scene=scene)


def scene_without_crs(g: GoodInputs) -> BadRun:
    scene = rewrite_scene(g, "no_crs.tif", profile={"crs": None})
    return good(g, scene, scene=scene)


def scene_rotated(g: GoodInputs) -> BadRun:
    with rasterio.open(g.scene) as ds:
        rotated = ds.transform @ Affine.rotation(15)
    scene = rewrite_scene(g, "rotated.tif", profile={"transform": rotated})
    return good(g, scene, scene=scene)


def scene_sheared(g: GoodInputs) -> BadRun:
    with rasterio.open(g.scene) as ds:
        t = ds.transform
    sheared = Affine(t.a, 2.5, t.c, 0, t.e, t.f)
    scene = rewrite_scene(g, "sheared.tif", profile={"transform": sheared})
    return good(g, scene, scene=scene)


def scene_with_3_bands(g: GoodInputs) -> BadRun:
    scene = rewrite_scene(g, "rgb.tif", bands=[1, 2, 3])
    return good(g, scene, scene=scene)


def scene_float32(g: GoodInputs) -> BadRun:
    scene = rewrite_scene(g, "float.tif", profile={"dtype": "float32", "nodata": None})
    return good(g, scene, scene=scene)


def scene_60m_pixels(g: GoodInputs) -> BadRun:
    with rasterio.open(g.scene) as ds:
        t = ds.transform
    coarse = Affine(60, 0, t.c, 0, -60, t.f)
    scene = rewrite_scene(g, "coarse.tif", profile={"transform": coarse})
    return good(g, scene, scene=scene)


# --- model packages ----------------------------------------------------------------------------


def repack(g: GoodInputs, name: str, members: dict[str, bytes | None]) -> Path:
    """A copy of the good package with members replaced, added, or removed (None)."""
    dst = g.work / name
    with zipfile.ZipFile(g.model) as src, zipfile.ZipFile(dst, "w") as out:
        kept = {n: src.read(n) for n in src.namelist()}
        for member, data in {**kept, **members}.items():
            if data is not None:
                out.writestr(member, data)
    return dst


class PickleTrap:
    """Unpickling this creates ``marker``: proof that something unpickled the package."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self) -> tuple[object, tuple[str, str]]:
        return (open, (self.marker, "w"))


def trap_marker(g: GoodInputs) -> Path:
    return g.work / "unpickled.marker"


def model_missing(g: GoodInputs) -> BadRun:
    model = g.work / "nope.geoseg"
    return good(g, model, model=model)


def model_not_a_zip(g: GoodInputs) -> BadRun:
    model = g.work / "garbage.geoseg"
    model.write_bytes(b"not a zip at all")
    return good(g, model, model=model)


def model_without_weights(g: GoodInputs) -> BadRun:
    model = repack(g, "no_weights.geoseg", {"weights.safetensors": None})
    return good(g, model, model=model)


def model_sha256_mismatch(g: GoodInputs) -> BadRun:
    with zipfile.ZipFile(g.model) as src:
        weights = bytearray(src.read("weights.safetensors"))
    weights[-1] ^= 0xFF  # one flipped byte in the last tensor
    model = repack(g, "edited.geoseg", {"weights.safetensors": bytes(weights)})
    return good(g, model, model=model)


def model_with_pickle(g: GoodInputs) -> BadRun:
    trap = pickle.dumps(PickleTrap(trap_marker(g)), protocol=4)
    model = repack(g, "pickled.geoseg", {"model.pkl": trap})
    return good(g, model, model=model)


def model_weights_are_a_pickle(g: GoodInputs) -> BadRun:
    trap = pickle.dumps(PickleTrap(trap_marker(g)), protocol=4)
    model = repack(g, "pickled_weights.geoseg", {"weights.safetensors": trap})
    return good(g, model, model=model)


# --- output folder and options -----------------------------------------------------------------


def out_below_a_file(g: GoodInputs) -> BadRun:
    blocker = g.work / "a-file"
    blocker.write_text("not a folder")
    out = blocker / "out"
    return good(g, out, out=out)


def tile_smaller_than_overlap(g: GoodInputs) -> BadRun:
    return good(g, "--tile-size 32", settings=(("tile_size", 32), ("overlap", 64)))


CASES = [
    Case("aoi-missing", aoi_missing, ("AOI file not found", "--aoi")),
    Case("aoi-is-a-raster", aoi_is_a_raster, ("cannot read the AOI",)),
    Case("aoi-is-a-table", aoi_is_a_table, ("no geometry column",)),
    Case("aoi-not-json", aoi_is_garbage, ("cannot read the AOI",)),
    Case("aoi-without-crs", aoi_without_crs, ("no CRS", ".prj")),
    Case("aoi-no-features", aoi_without_features, ("no geometry",)),
    Case("aoi-null-geometry", aoi_with_null_geometry, ("no geometry",)),
    Case("aoi-outside-scenes", aoi_outside_every_scene, ("does not cover any pixel", "scene.tif")),
    Case("aoi-touches-edge", aoi_touching_the_scene_edge, ("does not cover any pixel",)),
    Case("scene-truncated", scene_truncated, ("truncated or corrupt", "copy or download")),
    Case("scene-not-a-tiff", scene_not_a_tiff, ("cannot read the scene",)),
    Case("scene-missing", scene_missing, ("scene not found",)),
    Case("scene-without-crs", scene_without_crs, ("no CRS", "gdal_edit")),
    Case("scene-rotated", scene_rotated, ("rotated or sheared", "gdalwarp")),
    Case("scene-sheared", scene_sheared, ("rotated or sheared", "gdalwarp")),
    Case("scene-band-count", scene_with_3_bands, ("has 3 band(s)", "needs 4")),
    Case("scene-dtype", scene_float32, ("dtype float32", "uint16")),
    Case("scene-gsd", scene_60m_pixels, ("ground sample distance 60.00 m", "resample")),
    Case("model-missing", model_missing, ("model package not found",)),
    Case("model-not-a-zip", model_not_a_zip, ("cannot read the model package",)),
    Case("model-without-weights", model_without_weights, ("weights.safetensors is missing",)),
    Case("model-sha256-mismatch", model_sha256_mismatch, ("does not match the sha256",)),
    Case("model-with-pickle", model_with_pickle, ("model.pkl", "never loads pickles")),
    Case("model-weights-pickled", model_weights_are_a_pickle, ("never loads pickles",)),
    Case("out-below-a-file", out_below_a_file, ("not writable", "--out")),
    Case("tile-smaller-than-overlap", tile_smaller_than_overlap, ("--overlap 64",)),
]


# ---------------------------------------------------------------------------------------------
# Checks


def snapshot(folder: Path) -> dict[str, str]:
    """Relative path -> sha256 of each file ('dir' for folders) below ``folder``."""
    found = {}
    for p in sorted(folder.rglob("*")):
        rel = str(p.relative_to(folder))
        found[rel] = "dir" if p.is_dir() else hashlib.sha256(p.read_bytes()).hexdigest()
    return found


def error_line(proc: Completed, *, names: str, says: tuple[str, ...]) -> str:
    """The one stderr line of a refused run, after checking exit code, traceback and content."""
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr + proc.stdout, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    line = lines[0]
    assert line.startswith("error: "), line
    assert names in line, (names, line)
    for fragment in says:
        assert fragment in line, (fragment, line)
    return line


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


def run_in_process(args: list[str], capfd: pytest.CaptureFixture[str]) -> Completed:
    """The `geoseg` CLI in this process (imports are paid once), captured at the file
    descriptors: lines that GDAL or libtiff write straight to stderr count as well.

    An exception escaping the CLI fails the test with its traceback, as it should.
    """
    capfd.readouterr()
    try:
        app(args, prog_name="geoseg")
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    out, err = capfd.readouterr()
    return subprocess.CompletedProcess(["geoseg", *args], code, out, err)


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
    from geoseg.pipeline import run as run_pipeline

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
    box, crs = _scene_box(inputs)
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

    scene = write_synthetic_scene(tmp_path / "in", size_px=768, seed=13)
    args = [
        "run", "--aoi", scene.aoi_path, "--scenes", scene.image_path, "--model", demo_model,
        "--device", "cpu", "--workers", "0",
        "--tile-size", "128", "--overlap", "16", "--batch-size", "2",
    ]  # fmt: skip
    out = tmp_path / "out"
    exe = Path(sys.executable).with_name("geoseg")
    proc = subprocess.Popen(
        [str(exe), *map(str, args), "--out", str(out)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 120
    while not list(out.glob(".scene.partial-*/classes.raw.tif")):  # prediction has started
        assert proc.poll() is None, "the run ended before it could be killed"
        assert time.monotonic() < deadline, "prediction never started"
        time.sleep(0.05)
    time.sleep(0.5)
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
