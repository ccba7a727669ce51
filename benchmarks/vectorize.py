"""Vectorizing a large class raster: single-pass shapes vs geoseg on Dask vs gdal_polygonize.

    python benchmarks/vectorize.py                        # 10k x 10k, 2 workers, 2048 px blocks
    python benchmarks/vectorize.py --size 4000 --keep /tmp/vec   # smaller; reuse the raster

A synthetic land-cover class raster (`geoseg.synthetic.render` labels: fields, forest, towns,
roads, rivers crossing the scene, lakes) is generated once, block by block in a process pool,
into a temp folder. Then, in this one run, each contender is a separate process writing the
same GeoPackage:

- ``shapes``: one process, the whole raster in memory, ``rasterio.features.shapes`` once
  (4-connectivity, as gdal_polygonize), shapely geometries built in bulk, the same columns as
  geoseg (class_id, class_name, pixel_count, area_m2, perimeter_m, mean_confidence) written
  with pyogrio (spatial index, style) -- the strong single-pass baseline;
- ``geoseg``: `geoseg.vectorize.vectorize_raster` on a LocalCluster of ``--workers``
  processes (blocks of ``--block-size``); timed with and without starting the cluster;
- ``geoseg-local``: the same in one process, blocks one after another (``--workers 0``): the
  share of the speed-up that comes from geoseg's crack tracer rather than from Dask;
- ``gdal``: ``gdal_polygonize.py -f GPKG`` (Debian's GDAL CLI), class value only.

Printed: wall times and ratios, peak RSS and CPU time of every process (sampled every 50 ms
from this process; the Dask scheduler runs inside the geoseg client process), the machine's
load, and whether the polygon sets are identical: count and area per class for all three,
and the exact geometry sets (every polygon normalized and compared as WKB).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from itertools import chain
from pathlib import Path
from typing import Any

import numpy as np
import psutil
import pyogrio
import rasterio
import rasterio.features
import shapely
from pyogrio.raw import read as ogr_read
from rasterio.windows import Window

from geoseg.classes import CLASS_NODATA
from geoseg.geo.scene import measure_m
from geoseg.io.outputs import classes_tags
from geoseg.io.vector import write_polygons_gpkg
from geoseg.synthetic import SYNTHETIC_CLASSES, LandscapeSpec, make_spec, render
from geoseg.vectorize import VectorizeOptions, dask_client, vectorize_raster

GENERATE_BLOCK_PX = 1024
LAYER = "landcover"
CONTENDERS = ("shapes", "geoseg", "geoseg-local")


# --------------------------------------------------------------------------- the raster


def _render_labels(spec: LandscapeSpec, row: int, col: int) -> tuple[int, int, np.ndarray]:
    height = min(GENERATE_BLOCK_PX, spec.height_px - row)
    width = min(GENERATE_BLOCK_PX, spec.width_px - col)
    return row, col, render(spec, row, col, height, width)[1]


def generate(path: Path, size_px: int, seed: int, processes: int) -> float:
    """Write the synthetic class raster (tiled, DEFLATE) block by block; return seconds."""
    t0 = time.perf_counter()
    spec = make_spec(size_px, size_px, seed)
    tmp = path.with_name(path.name + ".partial")
    profile = {
        "driver": "GTiff",
        "height": size_px,
        "width": size_px,
        "count": 1,
        "dtype": "uint8",
        "nodata": CLASS_NODATA,
        "crs": spec.crs,
        "transform": spec.transform,
        "tiled": True,
        "blockxsize": 512,
        "blockysize": 512,
        "compress": "deflate",
    }
    starts = [
        (r, c)
        for r in range(0, size_px, GENERATE_BLOCK_PX)
        for c in range(0, size_px, GENERATE_BLOCK_PX)
    ]
    with (
        rasterio.open(tmp, "w", **profile) as dst,
        ProcessPoolExecutor(processes) as pool,
    ):
        dst.update_tags(**classes_tags(SYNTHETIC_CLASSES))
        blocks = pool.map(_render_labels, [spec] * len(starts), *zip(*starts, strict=True))
        for row, col, labels in blocks:
            dst.write(labels, 1, window=Window(col, row, labels.shape[1], labels.shape[0]))
    tmp.replace(path)
    return time.perf_counter() - t0


# --------------------------------------------------------------------------- contenders


def single_pass_shapes(raster: Path, out: Path) -> dict[str, float]:
    """The baseline: whole raster, one rasterio.features.shapes call, one GeoPackage write."""
    t0 = time.perf_counter()
    with rasterio.open(raster) as src:
        classes = src.read(1)
        valid = src.read_masks(1) > 0
        transform, crs = src.transform, src.crs
    rings: list[list[tuple[float, float]]] = []
    owner: list[int] = []
    values: list[int] = []
    shapes = rasterio.features.shapes(classes, mask=valid, connectivity=4, transform=transform)
    for index, (geojson, value) in enumerate(shapes):
        values.append(int(value))
        rings.extend(geojson["coordinates"])
        owner.extend([index] * len(geojson["coordinates"]))
    del classes, valid
    sizes = np.fromiter(map(len, rings), dtype=np.int64, count=len(rings))
    xy = np.fromiter(
        chain.from_iterable(chain.from_iterable(rings)), dtype=np.float64, count=2 * sizes.sum()
    ).reshape(-1, 2)
    del rings
    geometry = shapely.polygons(
        shapely.linearrings(xy, indices=np.repeat(np.arange(len(sizes)), sizes)),
        indices=np.asarray(owner),
    )
    class_id = np.asarray(values, dtype=np.int32)
    import pyproj

    area, perimeter = measure_m(geometry, pyproj.CRS.from_wkt(crs.to_wkt()))
    names = {c.id: c.name for c in SYNTHETIC_CLASSES}
    attributes = {
        "class_id": class_id,
        "class_name": np.array([names[int(c)] for c in class_id], dtype=object),
        "pixel_count": np.rint(area / abs(transform.a * transform.e)).astype(np.int64),
        "area_m2": area,
        "perimeter_m": perimeter,
        "mean_confidence": np.full(len(class_id), np.nan),
    }
    write_polygons_gpkg(out, geometry, attributes, crs.to_wkt(), SYNTHETIC_CLASSES, layer=LAYER)
    return {"wall_s": time.perf_counter() - t0}


def geoseg_dask(raster: Path, out: Path, workers: int, block_px: int) -> dict[str, float]:
    """geoseg on a LocalCluster started here; times with and without the cluster start."""
    t0 = time.perf_counter()
    with dask_client(workers=workers) as client:
        client.wait_for_workers(workers)
        t_ready = time.perf_counter()
        vectorize_raster(
            raster,
            out,
            classes=SYNTHETIC_CLASSES,
            options=VectorizeOptions(block_size_px=block_px),
            client=client,
            layer=LAYER,
        )
        t_done = time.perf_counter()
    return {
        "wall_s": time.perf_counter() - t0,
        "cluster_start_s": t_ready - t0,
        "vectorize_s": t_done - t_ready,
    }


def geoseg_local(raster: Path, out: Path, block_px: int) -> dict[str, float]:
    """geoseg in this process, no Dask: blocks one after another, then the seam merge."""
    t0 = time.perf_counter()
    vectorize_raster(
        raster,
        out,
        classes=SYNTHETIC_CLASSES,
        options=VectorizeOptions(block_size_px=block_px, workers=0),
        layer=LAYER,
    )
    return {"wall_s": time.perf_counter() - t0}


def _child(args: argparse.Namespace) -> None:
    """Run one contender in this (child) process and print its timings as JSON."""
    raster, out = Path(args.raster), Path(args.out)
    if args.run == "shapes":
        result = single_pass_shapes(raster, out)
    elif args.run == "geoseg-local":
        result = geoseg_local(raster, out, args.block_size)
    else:
        result = geoseg_dask(raster, out, args.workers, args.block_size)
    print(json.dumps(result))


# --------------------------------------------------------------------------- measuring


def _role(proc: psutil.Process, root: int) -> str:
    if proc.pid == root:
        return "main"
    try:
        cmd = " ".join(proc.cmdline())
        parent = proc.ppid()
    except psutil.Error:
        return "?"
    if "resource_tracker" in cmd:
        return "resource tracker"
    # LocalCluster's nannies run inside the main process; each worker is a spawned child.
    if parent == root:
        return "worker" if "spawn_main" in cmd else "child"
    return "grandchild"


def run_measured(command: list[str]) -> tuple[float, dict[str, tuple[int, float]], str]:
    """Run ``command``; return (wall s, {role: (peak RSS, CPU s)} per process, stdout)."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    root = psutil.Process(proc.pid)
    peaks: dict[int, int] = {}
    cpu: dict[int, float] = {}
    roles: dict[int, str] = {}
    while proc.poll() is None:
        try:
            procs = [root, *root.children(recursive=True)]
        except psutil.Error:
            procs = []
        for p in procs:
            try:
                with p.oneshot():
                    rss = p.memory_info().rss
                    times = p.cpu_times()
            except psutil.Error:
                continue
            peaks[p.pid] = max(peaks.get(p.pid, 0), rss)
            cpu[p.pid] = times.user + times.system
            roles.setdefault(p.pid, _role(p, proc.pid))
        time.sleep(0.05)
    stdout, stderr = proc.communicate()
    wall = time.perf_counter() - t0
    if proc.returncode:
        raise SystemExit(f"{command} failed:\n{stderr.decode()[-3000:]}")
    named: dict[str, tuple[int, float]] = {}
    counts: Counter[str] = Counter()
    for pid in sorted(peaks):
        role = roles[pid]
        if role == "resource tracker":
            continue
        counts[role] += 1
        name = f"{role} {counts[role]}" if role == "worker" else role
        named[name] = (peaks[pid], cpu[pid])
    return wall, named, stdout.decode()


def summarize(path: Path, layer: str, class_field: str) -> dict[str, object]:
    """Polygon count and area per class, and the normalized WKB of every polygon."""
    info = pyogrio.read_info(path, layer=layer)
    _, _, wkb, fields = ogr_read(path, layer=layer, columns=[class_field])
    geometry = shapely.from_wkb(wkb)
    class_id = np.asarray(fields[0]).astype(np.int64)
    area = shapely.area(geometry)
    per_class = {
        int(c): (int((class_id == c).sum()), float(area[class_id == c].sum()))
        for c in np.unique(class_id)
    }
    normalized = shapely.to_wkb(shapely.normalize(geometry))
    return {"n": int(info["features"]), "per_class": per_class, "wkb": sorted(normalized)}


def _mb(n: int) -> str:
    return f"{n / 2**20:,.0f} MB"


Runs = dict[str, tuple[float, dict[str, tuple[int, float]], dict[str, float]]]
"""Per contender: wall seconds, peak RSS and CPU per process, and what the run printed."""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, default=10_000, help="raster width = height (px)")
    parser.add_argument("--workers", type=int, default=2, help="Dask worker processes")
    parser.add_argument("--block-size", type=int, default=2048, help="geoseg block size (px)")
    parser.add_argument("--seed", type=int, default=3, help="seed of the synthetic landscape")
    parser.add_argument("--keep", type=Path, help="folder to keep (and reuse) the raster in")
    parser.add_argument("--run", choices=CONTENDERS, help=argparse.SUPPRESS)
    parser.add_argument("--raster", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    return parser


def _prepare_raster(args: argparse.Namespace, work: Path) -> Path:
    """The synthetic class raster in ``work``: generated, or reused from ``--keep``."""
    raster = work / f"classes_{args.size}_{args.seed}.tif"
    print(f"machine: {os.cpu_count()} CPU cores, load average {os.getloadavg()[0]:.1f} before")
    if raster.exists():
        print(f"raster: {raster} (reused)")
    else:
        seconds = generate(raster, args.size, args.seed, processes=args.workers)
        print(f"raster: {raster} generated in {seconds:.1f}s")
    with rasterio.open(raster) as src:
        print(f"        {src.width} x {src.height} px, {src.crs}, {src.res[0]:g} m pixels")
    return raster


def _run_contenders(args: argparse.Namespace, raster: Path, outputs: dict[str, Path]) -> Runs:
    """Each contender (and gdal_polygonize.py when installed) in its own measured process."""
    script = [sys.executable, str(Path(__file__).resolve())]
    for path in outputs.values():
        path.unlink(missing_ok=True)
    runs: Runs = {}
    for name in CONTENDERS:
        command = [*script, "--run", name, "--raster", str(raster), "--out", str(outputs[name])]
        command += ["--workers", str(args.workers), "--block-size", str(args.block_size)]
        wall, peaks, stdout = run_measured(command)
        runs[name] = (wall, peaks, json.loads(stdout.strip().splitlines()[-1]))
    gdal = shutil.which("gdal_polygonize.py")
    if gdal:
        command = [gdal, "-q", str(raster), "-f", "GPKG", str(outputs["gdal"]), LAYER, "DN"]
        wall, peaks, _ = run_measured(command)
        runs["gdal"] = (wall, peaks, {"wall_s": wall})
    else:
        print("gdal_polygonize.py not found (Debian: apt-get install gdal-bin): skipped")
    return runs


def _print_timings(args: argparse.Namespace, runs: Runs) -> None:
    print(f"load average after the runs: {os.getloadavg()[0]:.1f}")
    shapes_s = runs["shapes"][2]["wall_s"]
    geoseg_timing = runs["geoseg"][2]
    print("\nwall time, GeoPackage writing included (speed-up = shapes time / this time)")
    rows = [
        ("shapes: single pass", shapes_s),
        (f"geoseg: {args.workers} workers, cluster start+stop included", geoseg_timing["wall_s"]),
        (f"geoseg: {args.workers} workers, cluster already up", geoseg_timing["vectorize_s"]),
        ("geoseg: one process, no Dask (--workers 0)", runs["geoseg-local"][2]["wall_s"]),
    ]
    if "gdal" in runs:
        rows.append(("gdal_polygonize.py", runs["gdal"][2]["wall_s"]))
    for label, seconds in rows:
        print(f"  {label:<46} {seconds:7.1f} s   speed-up {shapes_s / seconds:5.2f}x")
    print(f"  (starting the LocalCluster took {geoseg_timing['cluster_start_s']:.1f} s)")
    print("\npeak resident memory and CPU time per process (sampled every 50 ms)")
    for name, (_, peaks, _) in runs.items():
        listed = ", ".join(f"{role} {_mb(rss)} / {cpu:.1f} s" for role, (rss, cpu) in peaks.items())
        total_cpu = sum(cpu for _, cpu in peaks.values())
        print(f"  {name:<12} {listed}; CPU total {total_cpu:.1f} s")


def _same_counts_and_areas(summary: dict[str, Any], reference: dict[str, Any]) -> bool:
    return summary["per_class"].keys() == reference["per_class"].keys() and all(
        summary["per_class"][c][0] == reference["per_class"][c][0]
        and math.isclose(summary["per_class"][c][1], reference["per_class"][c][1], rel_tol=1e-12)
        for c in reference["per_class"]
    )


def _print_comparison(runs: Runs, outputs: dict[str, Path]) -> None:
    print("\nsame polygons?")
    summaries = {name: summarize(outputs[name], LAYER, "class_id") for name in CONTENDERS}
    if "gdal" in runs:
        summaries["gdal"] = summarize(outputs["gdal"], LAYER, "DN")
    for name, summary in summaries.items():
        per_class = ", ".join(
            f"{c}: {n} / {a / 1e6:,.3f} km²" for c, (n, a) in sorted(summary["per_class"].items())
        )
        print(f"  {name:<12} {summary['n']:>8} polygons  ({per_class})")
    reference = summaries["shapes"]
    for name in [n for n in summaries if n != "shapes"]:
        summary = summaries[name]
        counts_equal = _same_counts_and_areas(summary, reference)
        identical = summary["wkb"] == reference["wkb"]
        print(
            f"  {name} vs shapes: counts and areas per class "
            f"{'equal' if counts_equal else 'DIFFER'}; geometries "
            f"{'identical (normalized WKB)' if identical else 'NOT identical'}"
        )


def main() -> None:
    args = _parser().parse_args()
    if args.run:
        _child(args)
        return
    work = args.keep or Path(tempfile.mkdtemp(prefix="geoseg-vectorize-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    raster = _prepare_raster(args, work)
    outputs = {name: work / f"{name}.gpkg" for name in (*CONTENDERS, "gdal")}
    runs = _run_contenders(args, raster, outputs)
    _print_timings(args, runs)
    _print_comparison(runs, outputs)
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
