"""Paths of the checkout and the real `geoseg` CLI in a subprocess, for end-to-end tests."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DEMO_MODEL = REPO / "geoseg" / "data" / "demo.geoseg"
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
