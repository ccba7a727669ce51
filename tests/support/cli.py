"""Paths of the checkout and the real `geoseg` CLI in a subprocess, for end-to-end tests."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SHARED_DATA = REPO.parent / "shared" / "data"


def geoseg_cli(
    *args: str | Path,
    check: bool = False,
    preexec_fn: Callable[[], None] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run the installed `geoseg` console script in a subprocess (the real CLI, exit codes too).

    ``preexec_fn`` runs in the child before `geoseg` starts (resource limits, another user).
    """
    exe = Path(sys.executable).with_name("geoseg")
    proc = subprocess.run(
        [str(exe), *map(str, args)],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
        preexec_fn=preexec_fn,
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"geoseg {args} failed:\n{proc.stdout}\n{proc.stderr}")
    return proc


def start_run_until_predicting(
    args: Sequence[str | Path], out: Path, *, capture: bool = False
) -> subprocess.Popen[str]:
    """Start ``geoseg <args> --out <out>`` and return once prediction has started.

    Prediction has started when the scene's temp folder holds its raw class raster. With
    ``capture`` the child's stdout/stderr are pipes (read them with ``communicate``).
    """
    exe = Path(sys.executable).with_name("geoseg")
    stream = subprocess.PIPE if capture else subprocess.DEVNULL
    proc = subprocess.Popen(
        [str(exe), *map(str, args), "--out", str(out)], stdout=stream, stderr=stream, text=True
    )
    deadline = time.monotonic() + 120
    while not list(out.glob(".scene.partial-*/classes.raw.tif")):
        assert proc.poll() is None, proc.communicate() if capture else "the run ended early"
        assert time.monotonic() < deadline, "prediction never started"
        time.sleep(0.05)
    return proc


def write_geojson(path: Path, geometries: list[dict | None], crs: str | None = None) -> Path:
    """A GeoJSON FeatureCollection of raw geometry dicts (optionally with a legacy crs member)."""
    doc: dict = {
        "type": "FeatureCollection",
        "features": [{"type": "Feature", "properties": {}, "geometry": g} for g in geometries],
    }
    if crs:
        doc["crs"] = {"type": "name", "properties": {"name": crs}}
    path.write_text(json.dumps(doc))
    return path
