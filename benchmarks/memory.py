"""Peak memory of `geoseg run` against scene size: it must grow with width, not with area.

    python benchmarks/memory.py                     # 5k x 5k and 20k x 20k, CPU, demo model
    python benchmarks/memory.py --sizes 2000 8000   # quicker

Each scene is a synthetic 4-band uint16 GeoTIFF written block by block (memory-bounded too),
with the synthetic AOI (about 55 % of the scene). Each run is a separate `geoseg run`
subprocess; its resident memory and that of its child processes (Dask workers) are sampled
every 0.1 s. Printed: peak RSS of the main process, peak summed RSS of the process tree, wall
time, and the ratio of the largest to the smallest scene's peaks (goal: <= 1.3 while the
area grows 16x).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

from geoseg.synthetic import aoi_polygon, make_spec, write_aoi_geojson, write_scene

REPO = Path(__file__).resolve().parents[1]
GEOSEG = Path(sys.executable).with_name("geoseg")


def sample_peak_rss(proc: subprocess.Popen[bytes], interval_s: float = 0.1) -> tuple[int, int]:
    """(peak RSS of ``proc``, peak summed RSS of ``proc`` and its descendants) until it exits."""
    main = psutil.Process(proc.pid)
    peak_main = peak_tree = 0
    while proc.poll() is None:
        try:
            rss_main = main.memory_info().rss
            rss_tree = rss_main
            for child in main.children(recursive=True):
                try:
                    rss_tree += child.memory_info().rss
                except psutil.Error:
                    continue
        except psutil.Error:
            break
        peak_main, peak_tree = max(peak_main, rss_main), max(peak_tree, rss_tree)
        time.sleep(interval_s)
    return peak_main, peak_tree


def measure(size: int, work: Path, args: argparse.Namespace) -> dict[str, object]:
    folder = work / f"s{size}"
    folder.mkdir()
    t0 = time.perf_counter()
    spec = make_spec(size, size, seed=202)
    write_scene(spec, folder / "scene.tif", folder / "labels.tif", block_px=1024)
    write_aoi_geojson(aoi_polygon(spec), spec.crs, folder / "aoi.geojson")
    generate_s = time.perf_counter() - t0
    cmd = [
        str(GEOSEG), "run",
        "--aoi", str(folder / "aoi.geojson"),
        "--scenes", str(folder / "scene.tif"),
        "--model", str(args.model),
        "--out", str(folder / "out"),
        "--device", args.device,
        "--tile-size", str(args.tile),
        "--batch-size", str(args.batch),
    ]  # fmt: skip
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    peak_main, peak_tree = sample_peak_rss(proc)
    _, stderr = proc.communicate()
    if proc.returncode != 0:
        raise SystemExit(f"geoseg run failed for {size}px:\n{stderr.decode()}")
    run = json.loads((folder / "out" / "run.json").read_text())
    scene = run["scenes"][0]
    return {
        "scene_px": f"{size}x{size}",
        "aoi_window_mpx": round(scene["window_px"] / 1e6, 1),
        "generate_s": round(generate_s, 1),
        "run_s": round(time.perf_counter() - t0, 1),
        "stage_s": scene["timings_s"],
        "polygons": scene["polygons"],
        "peak_rss_main_mib": round(peak_main / 2**20),
        "peak_rss_tree_mib": round(peak_tree / 2**20),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--sizes", type=int, nargs="+", default=[5000, 20000])
    p.add_argument("--model", type=Path, default=REPO / "geoseg/data/demo.geoseg")
    p.add_argument("--device", default="cpu")
    p.add_argument("--tile", type=int, default=512)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--workdir", type=Path, default=None, help="keep scenes/outputs here")
    args = p.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    with tempfile.TemporaryDirectory(prefix="geoseg-mem-", dir=args.workdir) as tmp:
        results = []
        for size in sorted(args.sizes):
            results.append(measure(size, Path(tmp), args))
            print(json.dumps(results[-1]), flush=True)
    small, large = results[0], results[-1]
    print(
        json.dumps(
            {
                "area_ratio": round((args.sizes[-1] / args.sizes[0]) ** 2, 1),
                "peak_main_ratio": round(
                    large["peak_rss_main_mib"] / small["peak_rss_main_mib"], 3
                ),
                "peak_tree_ratio": round(
                    large["peak_rss_tree_mib"] / small["peak_rss_tree_mib"], 3
                ),
                "largest_peak_main_mib": large["peak_rss_main_mib"],
                "largest_peak_tree_mib": large["peak_rss_tree_mib"],
            }
        )
    )


if __name__ == "__main__":
    main()
