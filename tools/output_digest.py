"""Digest of what a fixed set of geoseg commands writes: proof that a refactor changed no output.

Runs `geoseg demo`, a two-scene `geoseg run --mosaic` with 8-connectivity, sieve and
simplification, `geoseg vectorize` on small blocks with Dask, `geoseg evaluate` and a short
`geoseg train`, then prints one sha256 per output file. Files are hashed byte for byte,
except where bytes carry the clock: a GeoPackage is hashed table by table without its
timestamps, ``run.json`` and a model package's metadata without timings, versions and the
absolute paths of the work folder and the checkout.

    python tools/output_digest.py --work /tmp/digest > before.txt
    ... change the code ...
    python tools/output_digest.py --work /tmp/digest > after.txt && diff before.txt after.txt
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import sqlite3
import subprocess
import sys
import zipfile
from pathlib import Path

GEOSEG = Path(sys.executable).with_name("geoseg")
REPO = Path(__file__).resolve().parents[1]
VOLATILE_COLUMNS = {"last_change", "update_time"}
VOLATILE_RUN_KEYS = {"timings_s", "versions", "seconds", "cpu_seconds", "created", "datetime"}
"""``datetime`` of a local scene is its file's mtime: the inputs are generated afresh per run."""
UNORDERED = {"demo/vectorized.gpkg"}
"""Written by Dask workers: features arrive in completion order, so their order is not compared."""


def geoseg(*args: object) -> None:
    """Run the installed CLI; stop with its output if it fails."""
    proc = subprocess.run(
        [str(GEOSEG), *map(str, args)], check=False, capture_output=True, text=True
    )
    if proc.returncode != 0:
        sys.exit(f"geoseg {' '.join(map(str, args))} failed:\n{proc.stdout}\n{proc.stderr}")


def gpkg_digest(path: Path, *, ordered: bool = True) -> str:
    """sha256 over every table's rows in rowid order, timestamp columns left out.

    ``ordered=False``: rows sorted, without the feature ids and the R-tree (whose layout
    follows the insertion order), so the same features in another order digest the same.
    """
    h = hashlib.sha256()
    con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        tables = [
            r[0]
            for r in con.execute(
                "SELECT name FROM sqlite_master WHERE type='table' AND name NOT LIKE 'sqlite_%' "
                "ORDER BY name"
            )
        ]
        for table in tables:
            if not ordered and table.startswith("rtree_"):
                continue
            cols = [r[1] for r in con.execute(f'PRAGMA table_info("{table}")')]
            drop = VOLATILE_COLUMNS | (set() if ordered else {"fid"})
            keep = [c for c in cols if c not in drop]
            h.update(f"{table}:{keep}".encode())
            quoted = ", ".join(f'"{c}"' for c in keep)
            rows = [repr(r) for r in con.execute(f'SELECT {quoted} FROM "{table}" ORDER BY rowid')]
            for row in rows if ordered else sorted(rows):
                h.update(row.encode())
    finally:
        con.close()
    return h.hexdigest()


def scrub(value: object, root: str) -> object:
    """run.json without what changes from run to run: timings, versions, the work folder."""
    if isinstance(value, dict):
        return {k: scrub(v, root) for k, v in value.items() if k not in VOLATILE_RUN_KEYS}
    if isinstance(value, list):
        return [scrub(v, root) for v in value]
    if isinstance(value, str):
        return value.replace(root, "<work>").replace(str(REPO), "<repo>")
    return value


def source_raster_digest(path: Path, root: Path) -> str:
    """sha256 of a mosaic's source.tif: its pixels, grid and tags, the source table scrubbed."""
    import rasterio

    with rasterio.open(path) as ds:
        pixels, grid = ds.read().tobytes(), (ds.crs.to_wkt(), tuple(ds.transform), ds.shape)
        tags = ds.tags()
    tags["GEOSEG_SOURCES"] = json.dumps(scrub(json.loads(tags["GEOSEG_SOURCES"]), str(root)))
    return hashlib.sha256(pixels + repr((grid, sorted(tags.items()))).encode()).hexdigest()


def file_digest(path: Path, root: Path) -> str:
    if path.suffix == ".gpkg":
        return gpkg_digest(path, ordered=str(path.relative_to(root)) not in UNORDERED)
    if path.suffix == ".geoseg":  # a zip: the weights' bytes and the metadata without timings
        with zipfile.ZipFile(path) as zf:
            meta = scrub(json.loads(zf.read("metadata.json")), str(root))
            weights = zf.read("weights.safetensors")
        return hashlib.sha256(weights + json.dumps(meta, sort_keys=True).encode()).hexdigest()
    if path.name == "source.tif":  # its source table holds the scenes' datetimes (mtimes)
        return source_raster_digest(path, root)
    if path.name in ("run.json", "report.json"):
        doc = scrub(json.loads(path.read_text(encoding="utf-8")), str(root))
        return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()
    return hashlib.sha256(path.read_bytes()).hexdigest()


def produce(work: Path) -> None:
    """The commands whose outputs are digested (CPU, fixed seeds)."""
    geoseg("demo", "--out", work / "demo", "--device", "cpu")
    inputs = work / "demo" / "inputs"
    geoseg("synth", "--out", work / "second", "--size", "600", "--seed", "11",
           "--nodata-margin", "40")  # fmt: skip
    geoseg(
        "run", "--aoi", inputs / "aoi.geojson",
        "--scenes", inputs / "scene.tif", "--scenes", work / "second" / "scene.tif",
        "--out", work / "run8", "--device", "cpu", "--connectivity", "8",
        "--min-area", "400", "--simplify", "3", "--workers", "0", "--mosaic",
    )  # fmt: skip
    geoseg(
        "vectorize", work / "demo" / "scene" / "classes.tif",
        "--out", work / "demo" / "vectorized.gpkg",
        "--confidence", work / "demo" / "scene" / "confidence.tif",
        "--block-size", "256", "--workers", "2",
    )  # fmt: skip
    geoseg(
        "evaluate", "--image", inputs / "scene.tif", "--labels", inputs / "labels.tif",
        "--model", REPO / "geoseg" / "data" / "demo.geoseg",
        "--window", "cols=512:", "--device", "cpu", "--out", work / "evaluation",
    )  # fmt: skip
    geoseg(
        "train", "--image", inputs / "scene.tif", "--labels", inputs / "labels.tif",
        "--out", work / "trained.geoseg", "--arch", "unet", "--width", "0.25",
        "--epochs", "2", "--steps-per-epoch", "3", "--batch-size", "2", "--tile-size", "64",
        "--device", "cpu", "--seed", "3", "--threads", "1",
    )  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, required=True, help="scratch folder (emptied)")
    args = parser.parse_args()
    work = args.work.resolve()
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    produce(work)
    for path in sorted(p for p in work.rglob("*") if p.is_file()):
        if ".ckpt" in path.parts[-2] and path.suffix == ".safetensors":
            continue  # checkpoint metadata holds wall-clock seconds
        print(f"{file_digest(path, work)}  {path.relative_to(work)}")


if __name__ == "__main__":
    main()
