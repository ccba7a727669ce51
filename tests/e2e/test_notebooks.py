"""The notebooks run top to bottom (nbclient, a kernel of this interpreter) and compute right.

Each notebook is executed in a temp working folder as committed, with its small default
parameters; papermill-style, a cell inserted after the cell tagged ``parameters`` can override
them. A cell appended at the end prints one JSON line of facts the test checks against values
computed independently here (areas, pixel counts), so a notebook that runs but computes
nonsense fails too.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import nbformat
import numpy as np
import pytest
import rasterio
from nbclient import NotebookClient
from nbformat.v4 import new_code_cell

from tests.support.cli import REPO

NOTEBOOKS = REPO / "notebooks"
KERNEL_NAME = "geoseg-tests"

pytestmark = pytest.mark.slow

_FACTS_COMMON = """
import json as _json
import sys as _sys

import geoseg as _geoseg

_facts = {"prefix": _sys.prefix, "geoseg": _geoseg.__file__}
"""


def run_notebook(
    name: str, workdir: Path, facts: str, overrides: dict[str, Any] | None = None
) -> tuple[nbformat.NotebookNode, dict[str, Any]]:
    """Execute ``notebooks/<name>`` in ``workdir``; the executed notebook and its facts.

    ``facts`` is code that fills the dict ``_facts`` from the notebook's variables; it runs in
    an extra last cell, which prints the dict as JSON.
    """
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    tagged = [i for i, c in enumerate(nb.cells) if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1, f"{name}: expected one cell tagged 'parameters'"
    if overrides:
        lines = [f"{key} = {value!r}" for key, value in overrides.items()]
        nb.cells.insert(tagged[0] + 1, new_code_cell("\n".join(lines)))
    nb.cells.append(new_code_cell(_FACTS_COMMON + facts + "\nprint(_json.dumps(_facts))"))
    client = NotebookClient(
        nb,
        kernel_name=KERNEL_NAME,
        timeout=600,
        resources={"metadata": {"path": str(workdir)}},
    )
    client.execute()
    stream = "".join(o.get("text", "") for o in nb.cells[-1].outputs if o.output_type == "stream")
    return nb, json.loads(stream.strip().splitlines()[-1])


def _png_outputs(nb: nbformat.NotebookNode) -> int:
    return sum(
        "image/png" in o.get("data", {})
        for cell in nb.cells
        if cell.cell_type == "code"
        for o in cell.outputs
    )


@pytest.fixture
def kernel_env(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> None:
    """A kernel of this interpreter that imports geoseg from this checkout, never a network.

    The kernel spec is written to a temp Jupyter path, so whatever ``python3`` kernel is
    installed on the machine (possibly another Python) cannot be picked instead.
    """
    spec_dir = tmp_path_factory.mktemp("jupyter") / "kernels" / KERNEL_NAME
    spec_dir.mkdir(parents=True)
    spec = {
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "geoseg tests",
        "language": "python",
    }
    (spec_dir / "kernel.json").write_text(json.dumps(spec), encoding="utf-8")
    monkeypatch.setenv("JUPYTER_PATH", str(spec_dir.parent.parent))
    path = os.environ.get("PYTHONPATH")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(REPO), path])))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("MPLBACKEND", "module://matplotlib_inline.backend_inline")


def _check_kernel(facts: dict[str, Any]) -> None:
    """The notebook ran in this interpreter's environment, on this checkout's geoseg."""
    assert Path(facts["prefix"]).resolve() == Path(sys.prefix).resolve()
    assert Path(facts["geoseg"]).resolve().is_relative_to(REPO.resolve())


def test_quickstart_runs_and_areas_add_up(tmp_path: Path, kernel_env: None) -> None:
    facts_code = """
_facts.update(
    area_sum_m2=float(area_table["area_m2"].sum()),
    share_sum=float(area_table["share"].sum()),
    classes=list(area_table.index),
    polygons_in_table=int(area_table["polygons"].sum()),
    polygons_in_run=int(result.polygons),
    aoi_m2=aoi_area_m2,
    classes_tif=str(Path(result.outputs["classes"]).resolve()),
    polygons_gpkg=str(Path(result.outputs["polygons"]).resolve()),
)
"""
    nb, facts = run_notebook("quickstart.ipynb", tmp_path, facts_code)
    _check_kernel(facts)
    classes_tif = Path(facts["classes_tif"])
    assert classes_tif.is_relative_to(tmp_path.resolve())  # OUT is relative to the workdir
    assert Path(facts["polygons_gpkg"]).is_file()
    with rasterio.open(classes_tif) as ds:
        classified_px = int((ds.read(1) != 255).sum())
        pixel_m2 = abs(ds.transform.a * ds.transform.e)
    # the polygons tile the classified pixels exactly; those cover most of the AOI
    assert facts["area_sum_m2"] == pytest.approx(classified_px * pixel_m2, rel=1e-6)
    assert 0.8 * facts["aoi_m2"] < facts["area_sum_m2"] <= 1.02 * facts["aoi_m2"]
    assert facts["share_sum"] == pytest.approx(1.0)
    assert facts["classes"] == ["water", "forest", "grassland", "cropland", "built-up"]
    assert facts["polygons_in_table"] == facts["polygons_in_run"] > 0
    assert _png_outputs(nb) >= 3  # scene, class map, polygons


def test_train_and_evaluate_runs_and_counts_every_scored_pixel(
    tmp_path: Path, kernel_env: None
) -> None:
    facts_code = """
_facts.update(
    matrix=evaluation.matrix.tolist(),
    scored_px=int(evaluation.scored_px),
    per_class=list(per_class.index),
    comparison=list(comparison.index),
    comparison_columns=list(comparison.columns),
    miou={loss: float(row["miou"]) for loss, row in comparison.iterrows()},
    eval_miou=float(evaluation.scores.miou),
    test_image=str(test_scene.image_path.resolve()),
    test_labels=str(test_scene.labels_path.resolve()),
    report=str((out / "report").resolve()),
    packages=sorted(str(p.resolve()) for p in out.glob("*.geoseg")),
)
"""
    nb, facts = run_notebook(
        "train_and_evaluate.ipynb", tmp_path, facts_code, overrides={"REPO": str(REPO)}
    )
    _check_kernel(facts)
    matrix = np.array(facts["matrix"])
    assert matrix.shape == (5, 5)
    with rasterio.open(facts["test_labels"]) as ds:
        labels = ds.read(1)
    with rasterio.open(facts["test_image"]) as ds:
        has_data = ds.dataset_mask() > 0
    scorable = int(((labels != 255) & has_data).sum())
    assert matrix.sum() == facts["scored_px"] == scorable
    assert facts["per_class"] == ["water", "forest", "grassland", "cropland", "built-up"]
    assert facts["comparison"] == ["ce", "weighted-ce", "focal"]
    assert "built-up iou" in facts["comparison_columns"]
    assert facts["miou"]["ce"] == pytest.approx(facts["eval_miou"])
    assert all(0.0 < v <= 1.0 for v in facts["miou"].values())
    assert [Path(p).name for p in facts["packages"]] == [
        "ce.geoseg",
        "focal.geoseg",
        "weighted-ce.geoseg",
    ]
    report = Path(facts["report"])
    assert (report / "report.json").is_file() and (report / "confusion.png").is_file()
    assert _png_outputs(nb) >= 1  # the confusion matrix figure
