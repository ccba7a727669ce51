"""The outputs of a demo run open styled in real QGIS (PyQGIS from Debian's python3-qgis).

`tests/support/qgis_check.py` runs under /usr/bin/python3 (where PyQGIS lives), headless, and
reports what QGIS made of classes.tif and polygons.gpkg; this test runs a small demo, then the
check, and looks at the PNGs QGIS rendered. Skipped when PyQGIS is not importable: `make
qgis-check` installs it and runs this test.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import rasterio
import shapely
from PIL import Image

from geoseg.demo import run_demo
from geoseg.geo.scene import SceneGrid
from geoseg.models.package import load_package
from geoseg.mosaic import MosaicSource, write_mosaic
from tests.support.cli import REPO

SYSTEM_PYTHON = Path("/usr/bin/python3")
CHECK_SCRIPT = REPO / "tests" / "support" / "qgis_check.py"
PNG_DIR_ENV = "GEOSEG_QGIS_PNG_DIR"
"""If set, the rendered PNGs and the check's JSON are also copied into this folder."""
REQUIRE_ENV = "GEOSEG_REQUIRE_QGIS"
"""Set by `make test` (which installs PyQGIS): a missing PyQGIS fails instead of skipping."""


def _system_env() -> dict[str, str]:
    """Environment for Debian's Python: headless Qt, none of the venv's Python paths."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    return {**env, "QT_QPA_PLATFORM": "offscreen"}


def _pyqgis_missing() -> str | None:
    """Why PyQGIS cannot be used here, or None when it can."""
    if not SYSTEM_PYTHON.exists():
        return f"{SYSTEM_PYTHON} not found"
    proc = subprocess.run(
        [str(SYSTEM_PYTHON), "-c", "import qgis.core"],
        capture_output=True,
        text=True,
        timeout=120,
        env=_system_env(),
        check=False,
    )
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["?"])[-1]
        return f"PyQGIS is not importable by {SYSTEM_PYTHON} ({last}); run `make qgis-check`"
    return None


pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def qgis_result(demo_model: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Run a small demo and the QGIS check on its outputs; the check's JSON result."""
    missing = _pyqgis_missing()
    if missing and os.environ.get(REQUIRE_ENV):
        pytest.fail(f"{missing}; {REQUIRE_ENV} is set, so the QGIS check must run")
    if missing:
        pytest.skip(missing)
    root = tmp_path_factory.mktemp("qgis")
    demo = run_demo(root / "demo", size_px=384, seed=5, device="cpu", model=demo_model)
    outputs = demo.report.scenes[0].outputs
    metadata = load_package(demo_model).metadata
    expected = root / "classes.json"  # what `geoseg model info --json` lists as classes
    expected.write_text(json.dumps([c.model_dump() for c in metadata.classes]), encoding="utf-8")
    # what `geoseg run --mosaic` writes, here from the one scene onto its own grid
    with rasterio.open(outputs["classes"]) as ds:
        grid = SceneGrid(ds.crs, ds.transform, ds.height, ds.width)
    write_mosaic(
        root,
        [MosaicSource("demo", Path(outputs["classes"]), Path(outputs["confidence"]))],
        grid,
        shapely.box(*grid.bounds),
        classes=metadata.class_infos(),
    )
    mosaic = root / "mosaic" / "classes.tif"
    proc = subprocess.run(
        [
            str(SYSTEM_PYTHON),
            str(CHECK_SCRIPT),
            "--classes-tif",
            outputs["classes"],
            "--polygons",
            outputs["polygons"],
            "--expected",
            str(expected),
            "--mosaic",
            str(mosaic),
            "--png-dir",
            str(root / "png"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env=_system_env(),
        check=False,
    )
    try:
        result = json.loads(proc.stdout)
    except json.JSONDecodeError:
        pytest.fail(f"the QGIS check printed no JSON (exit {proc.returncode}):\n{proc.stderr}")
    result["exit_code"] = proc.returncode
    result["outputs"] = outputs
    keep = os.environ.get(PNG_DIR_ENV)
    if keep:
        Path(keep).mkdir(parents=True, exist_ok=True)
        for png in result.get("pngs", {}).values():
            shutil.copy(png, keep)
        (Path(keep) / "qgis_check.json").write_text(proc.stdout, encoding="utf-8")
    return result


def test_qgis_opens_both_layers_styled_from_the_files(qgis_result: dict, demo_model: Path) -> None:
    assert qgis_result["problems"] == [] and qgis_result["ok"], qgis_result["problems"]
    assert qgis_result["exit_code"] == 0
    expected = [
        {"value": c.id, "label": c.name, "color": c.color.lower()}
        for c in load_package(demo_model).metadata.classes
    ]
    raster = qgis_result["raster"]  # as written: classes.qml beside it trims the palette
    assert raster["valid"] and raster["renderer"] == "paletted"
    assert raster["classes"] == expected
    # the GeoTIFF alone (its .qml ignored): colour table + GDAL category names
    embedded = qgis_result["raster_embedded"]
    assert embedded["valid"] and embedded["renderer"] == "paletted"
    ids = {c["value"] for c in expected}
    assert [c for c in embedded["classes"] if c["value"] in ids] == expected
    assert embedded["extra_values"] == [v for v in range(256) if v not in ids]
    mosaic = qgis_result["mosaic"]  # OUT/mosaic/classes.tif with its classes.qml
    assert mosaic["valid"] and mosaic["renderer"] == "paletted"
    assert mosaic["classes"] == expected
    for load in ("vector", "vector_embedded"):
        assert qgis_result[load]["valid"]
        assert qgis_result[load]["renderer"] == "categorizedSymbol"
        assert qgis_result[load]["attribute"] == "class_id"
        assert qgis_result[load]["classes"] == expected
        assert qgis_result[load]["features"] > 0


def _rgb(color: str) -> tuple[int, int, int]:
    return tuple(int(color[i : i + 2], 16) for i in (1, 3, 5))  # type: ignore[return-value]


@pytest.mark.parametrize("layer", ["raster", "vector"])
def test_qgis_renders_the_class_colours(qgis_result: dict, demo_model: Path, layer: str) -> None:
    """The PNG is not blank: mostly painted, each class of the raster in its colour, in a
    share close to the class's share of the raster."""
    with Image.open(qgis_result["pngs"][layer]) as image:
        pixels = np.asarray(image.convert("RGB")).reshape(-1, 3)
    assert len(pixels) >= 400 * 400
    painted = np.any(pixels != 255, axis=1).mean()
    assert painted > 0.5, f"only {painted:.0%} of the {layer} PNG is not background"
    colours, counts = np.unique(pixels, axis=0, return_counts=True)
    share = {
        tuple(int(v) for v in c): n / len(pixels) for c, n in zip(colours, counts, strict=True)
    }
    with rasterio.open(qgis_result["outputs"]["classes"]) as ds:
        class_map = ds.read(1)
    counts_by_id = np.bincount(class_map[class_map != 255], minlength=255)
    classes = load_package(demo_model).metadata.classes
    in_class_colours = 0.0
    for c in classes:
        raster_share = counts_by_id[c.id] / counts_by_id.sum()
        png_share = share.get(_rgb(c.color), 0.0) / painted
        in_class_colours += png_share
        if raster_share > 0.005:  # polygon outlines (darker) eat into small classes
            assert png_share > 0.5 * raster_share, (layer, c.name, png_share, raster_share)
    # the raster is drawn nearest-neighbour: exact colours; polygon fills are exact too,
    # apart from their thin darker outlines and anti-aliased edges
    assert in_class_colours > (0.98 if layer == "raster" else 0.8), in_class_colours
