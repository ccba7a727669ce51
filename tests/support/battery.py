"""The bad-input battery as data: cases that turn good inputs into one bad run each.

Shared by the CLI battery (`tests/e2e/test_bad_inputs.py`) and the Prefect flow battery
(`tests/flows/test_battery.py`): a builder turns the good inputs into a `BadRun` (inputs
and settings of one run, as `RunSettings` keywords or CLI arguments) and says which file or
option the one error line must name. Also the checks both batteries share.
"""

from __future__ import annotations

import dataclasses
import hashlib
import pickle
import shutil
import subprocess
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
from tests.support.cli import write_geojson

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
        extra = [a for k, v in self.settings for a in _cli_option(k, v)]
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


def _cli_option(name: str, value: object) -> list[str]:
    """A setting as `geoseg run` arguments: ``--name value``, or ``--[no-]name`` for a bool."""
    flag = name.replace("_", "-")
    if isinstance(value, bool):
        return [f"--{flag}" if value else f"--no-{flag}"]
    return [f"--{flag}", str(value)]


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


def scene_box(g: GoodInputs) -> tuple[shapely.Polygon, str]:
    with rasterio.open(g.scene) as ds:
        return shapely.box(*ds.bounds), ds.crs.to_string()


def aoi_outside_every_scene(g: GoodInputs) -> BadRun:
    box, crs = scene_box(g)
    far = affinity.translate(box, 50_000, 0)
    aoi = write_geojson(g.work / "aoi.geojson", [mapping(far)], crs=crs)
    return good(g, aoi, aoi=aoi)


def aoi_touching_the_scene_edge(g: GoodInputs) -> BadRun:
    """A polygon that shares the scene's right edge: the intersection has no area."""
    box, crs = scene_box(g)
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
    # resampled to the model GSD by default; refused only with --no-resample
    return good(g, scene, scene=scene, settings=(("resample", False),))


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
    Case("scene-gsd", scene_60m_pixels, ("ground sample distance 60.00 m", "--no-resample")),
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
