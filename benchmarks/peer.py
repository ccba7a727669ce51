"""Side by side: `geoseg run` against the plain torchgeo script a user would otherwise write.

    pip install -e '.[bench]'                          # torchgeo
    python benchmarks/peer.py                          # 3072 and 10240 px scenes, demo model
    python benchmarks/peer.py --sizes 1024             # a quick check
    python benchmarks/peer.py --sizes 3072 --workdir /tmp/peer   # keep scenes and outputs there

For each size a synthetic 4-band scene with its labels is generated (`geoseg.synthetic`; the
AOI is the whole scene), then both sides run on it, each as a separate subprocess, with the same
model (the shipped demo package by default), tile 512, overlap 64, batch 4:

- geoseg: ``geoseg run`` with the CLI defaults otherwise (device auto, reader threads, Dask
  workers for vectorizing, blending, COGs, preview, polygons);
- peer: ``benchmarks/peer_script.py`` (torchgeo RasterDataset + GridGeoSampler + DataLoader,
  argmax pasted without blending, one GeoTIFF, one single-pass `rasterio.features.shapes`
  into a GeoPackage).

Measured per side: wall time of the subprocess (interpreter start and imports included),
prediction time (geoseg: the ``predict`` stage in run.json, i.e. read, normalize, infer,
blend, write rows; peer: its loop over the DataLoader), peak RSS of the process tree (RSS of
the subprocess and all its descendants summed, sampled every 50 ms), and the mIoU of the class
raster against the generator's labels over the same pixels (every labelled pixel; a pixel a
side left unclassified counts as a miss). Printed: one table per size with both sides and
peer / geoseg ratios (> 1: geoseg is faster or leaner), then all results as JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
import shapely
from memory import sample_peak_rss  # benchmarks/memory.py, beside this script
from rasterio.windows import Window, from_bounds

from geoseg.classes import CLASS_NODATA
from geoseg.models import DEMO_MODEL
from geoseg.models.package import load_package
from geoseg.synthetic import make_spec, write_aoi_geojson, write_scene
from geoseg.training.metrics import confusion_matrix, scores

GEOSEG = Path(sys.executable).with_name("geoseg")
PEER_SCRIPT = Path(__file__).resolve().with_name("peer_script.py")
STRIP_ROWS = 1024
AOI_PAD_PX = 16
"""Least AOI padding; 1 % of the scene side where that is more (the bow grows with the side)."""


def write_inputs(size: int, seed: int, folder: Path) -> tuple[Path, Path, Path]:
    """scene.tif, labels.tif and aoi.geojson (the whole scene) in ``folder``."""
    spec = make_spec(size, size, seed=seed)
    scene, labels, aoi = folder / "scene.tif", folder / "labels.tif", folder / "aoi.geojson"
    write_scene(spec, scene, labels, block_px=1024)
    # The whole scene, padded: the GeoJSON is in EPSG:4326, and a box's straight edges there
    # bow back in the scene CRS (a pixel or two at 3072 px, tens at 10240 px: 18,377 px of a
    # 10240 px scene fell outside a 16 px pad); geoseg clips the AOI window to the scene.
    left, top = spec.origin_x, spec.origin_y
    pad = max(AOI_PAD_PX, size // 100) * spec.res_m
    right, bottom = left + size * spec.res_m, top - size * spec.res_m
    whole = shapely.box(left - pad, bottom - pad, right + pad, top + pad)
    write_aoi_geojson(whole, spec.crs, aoi)
    return scene, labels, aoi


def run_measured(cmd: list[str], folder: Path, name: str, interval_s: float) -> dict[str, Any]:
    """Run ``cmd``; its wall time and peak RSS (main process, whole tree), stdout text.

    stdout and stderr go to files in ``folder`` (a pipe could fill up and stall the child
    while the parent is busy sampling).
    """
    out_path, err_path = folder / f"{name}.stdout", folder / f"{name}.stderr"
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    with out_path.open("wb") as out, err_path.open("wb") as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, env=env)
        peak_main, peak_tree = sample_peak_rss(proc, interval_s)
        proc.wait()
        wall = time.perf_counter() - t0
    if proc.returncode != 0:
        tail = err_path.read_text(errors="replace")[-4000:]
        raise SystemExit(f"{name} failed (exit {proc.returncode}): {' '.join(cmd)}\n{tail}")
    return {
        "wall_s": wall,
        "peak_rss_main_mib": peak_main / 2**20,
        "peak_rss_tree_mib": peak_tree / 2**20,
        "stdout": out_path.read_text(),
    }


def median_run(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The run of median wall time (the lower middle one for an even count), with all walls."""
    ranked = sorted(runs, key=lambda r: r["wall_s"])
    chosen = dict(ranked[(len(ranked) - 1) // 2])
    chosen["walls_s"] = [round(r["wall_s"], 2) for r in runs]
    return chosen


def miou(classes_path: Path, labels_path: Path, class_ids: list[int]) -> dict[str, Any]:
    """mIoU of a class raster over every labelled pixel of ``labels_path``.

    The class raster may cover a sub-window of the labels (same grid); labelled pixels it
    does not cover or leaves nodata count as unclassified: a miss for their reference class.
    """
    n = len(class_ids)
    lut = np.full(256, n, dtype=np.int64)  # anything not a class (nodata) -> index n: a miss
    lut[class_ids] = np.arange(n)
    ref_lut = np.full(256, -1, dtype=np.int64)
    ref_lut[class_ids] = np.arange(n)
    matrix = np.zeros((n + 1, n + 1), dtype=np.int64)
    unclassified = 0
    with rasterio.open(classes_path) as pred_ds, rasterio.open(labels_path) as ref_ds:
        offset = from_bounds(*pred_ds.bounds, transform=ref_ds.transform)
        row_off, col_off = round(offset.row_off), round(offset.col_off)
        for row in range(0, ref_ds.height, STRIP_ROWS):
            h = min(STRIP_ROWS, ref_ds.height - row)
            ref = ref_ds.read(1, window=Window(0, row, ref_ds.width, h))
            pred = np.full_like(ref, CLASS_NODATA)
            # the part of this strip the class raster covers, in its own pixel coordinates
            r0, r1 = max(row - row_off, 0), min(row + h - row_off, pred_ds.height)
            c0, c1 = max(-col_off, 0), min(ref_ds.width - col_off, pred_ds.width)
            if r1 > r0 and c1 > c0:
                pred[r0 + row_off - row : r1 + row_off - row, c0 + col_off : c1 + col_off] = (
                    pred_ds.read(1, window=Window(c0, r0, c1 - c0, r1 - r0))
                )
            labelled = ref != CLASS_NODATA
            unclassified += int(np.count_nonzero(labelled & (lut[pred] == n)))
            matrix += confusion_matrix(ref_lut[ref], lut[pred], n + 1, ignore=~labelled)
    s = scores(matrix)
    return {
        "miou": float(np.nanmean(s.iou[:n])),
        "iou": [round(float(v), 4) for v in s.iou[:n]],
        "labelled_px": int(matrix.sum()),
        "unclassified_px": unclassified,
    }


def measure(size: int, work: Path, args: argparse.Namespace) -> dict[str, Any]:
    folder = work / f"s{size}"
    folder.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    scene, labels, aoi = write_inputs(size, args.seed, folder)
    generate_s = time.perf_counter() - t0
    class_ids = [c.id for c in load_package(args.model).metadata.classes]
    common = ["--tile-size", str(args.tile), "--overlap", str(args.overlap)]
    geoseg_cmd = [
        str(GEOSEG), "run",
        "--aoi", str(aoi), "--scenes", str(scene), "--model", str(args.model),
        "--out", str(folder / "geoseg"), *common, "--batch-size", str(args.batch),
    ]  # fmt: skip
    peer_cmd = [
        sys.executable, str(PEER_SCRIPT), str(scene), str(folder / "peer"),
        "--model", str(args.model), "--tile", str(args.tile), "--overlap", str(args.overlap),
        "--batch", str(args.batch),
    ]  # fmt: skip

    g_runs: list[dict[str, Any]] = []
    p_runs: list[dict[str, Any]] = []
    for i in range(args.repeats):
        # alternate the order (geoseg first, then peer first, ...): whichever side runs first
        # after the scene is written pays the cold page cache of torch's shared libraries
        sides = [("geoseg", geoseg_cmd, g_runs), ("peer", peer_cmd, p_runs)]
        for name, cmd, runs in sides if i % 2 == 0 else sides[::-1]:
            shutil.rmtree(folder / name, ignore_errors=True)  # the last run's (or --workdir's)
            runs.append(run_measured(cmd, folder, name, args.interval))
            if name == "geoseg":
                runs[-1]["record"] = json.loads((folder / "geoseg" / "run.json").read_text())
            else:
                runs[-1]["report"] = json.loads(runs[-1]["stdout"].strip().splitlines()[-1])
    # the figures of each side's median run by wall time (the outputs are those of the last
    # run, identical from run to run); every run's wall time is kept beside them
    g, p = median_run(g_runs), median_run(p_runs)
    record = g.pop("record")
    g_scene = record["scenes"][0]
    g.update(
        predict_s=g_scene["timings_s"]["predict"],
        stage_s=g_scene["timings_s"],
        tiles=g_scene["tiles"],
        polygons=g_scene["polygons"],
        device=record["settings"]["resolved"]["device"],
        **miou(Path(g_scene["outputs"]["classes"]), labels, class_ids),
    )
    p_report = p.pop("report")
    p.update(
        predict_s=p_report["predict_s"],
        stage_s={k: p_report[k] for k in ("predict_s", "write_s", "vectorize_s", "wall_s")},
        tiles=p_report["tiles"],
        polygons=p_report["polygons"],
        device=p_report["device"],
        **miou(folder / "peer" / "classes.tif", labels, class_ids),
    )
    for side in (g, p):
        del side["stdout"]
    return {
        "scene_px": size,
        "generate_s": round(generate_s, 1),
        "geoseg": g,
        "peer": p,
        "speedup_wall": p["wall_s"] / g["wall_s"],
        "speedup_predict": p["predict_s"] / g["predict_s"],
        "rss_ratio_peer_over_geoseg": p["peak_rss_tree_mib"] / g["peak_rss_tree_mib"],
    }


def table(r: dict[str, Any], args: argparse.Namespace) -> str:
    g, p = r["geoseg"], r["peer"]
    size = r["scene_px"]
    rows = [
        ("wall s (end to end)", f"{g['wall_s']:.1f}", f"{p['wall_s']:.1f}", r["speedup_wall"]),
        ("walls s (every run)", _walls(g), _walls(p), None),
        ("prediction s", f"{g['predict_s']:.1f}", f"{p['predict_s']:.1f}", r["speedup_predict"]),
        (
            "peak RSS, tree MiB",
            f"{g['peak_rss_tree_mib']:.0f}",
            f"{p['peak_rss_tree_mib']:.0f}",
            r["rss_ratio_peer_over_geoseg"],
        ),
        ("mIoU", f"{g['miou']:.4f}", f"{p['miou']:.4f}", None),
        ("unclassified px", str(g["unclassified_px"]), str(p["unclassified_px"]), None),
        ("tiles", str(g["tiles"]), str(p["tiles"]), None),
        ("polygons", str(g["polygons"]), str(p["polygons"]), None),
    ]
    head = (
        f"scene {size} x {size} px ({size * size / 1e6:.1f} Mpx), tile {args.tile}, overlap "
        f"{args.overlap}, batch {args.batch}, device {g['device']} / {p['device']}, "
        f"generated in {r['generate_s']} s"
    )
    lines = [
        head,
        f"{'':22}{'geoseg run':>16}{'torchgeo':>16}{'peer/geoseg':>14}",
        *(
            f"{name:22}{a:>16}{b:>16}{'' if ratio is None else f'{ratio:.2f}x':>14}"
            for name, a, b, ratio in rows
        ),
        f"{'mIoU geoseg - peer':22}{g['miou'] - p['miou']:>+16.4f}",
    ]
    return "\n".join(lines)


def _walls(side: dict[str, Any]) -> str:
    return "/".join(f"{w:.1f}" for w in side["walls_s"])


def rounded(value: Any) -> Any:
    if isinstance(value, float):
        return round(value, 3)
    if isinstance(value, dict):
        return {k: rounded(v) for k, v in value.items()}
    return value


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--sizes", type=int, nargs="+", default=[3072, 10240], help="scene sides, px")
    p.add_argument("--model", type=Path, default=DEMO_MODEL)
    p.add_argument("--tile", type=int, default=512)
    p.add_argument("--overlap", type=int, default=64)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--seed", type=int, default=101, help="synthetic scene seed")
    p.add_argument(
        "--repeats", type=int, default=3, help="runs per side, order alternating; median kept"
    )
    p.add_argument("--interval", type=float, default=0.05, help="RSS sampling period, s")
    p.add_argument("--workdir", type=Path, default=None, help="keep scenes and outputs here")
    args = p.parse_args()
    if args.workdir is None:
        work_dir: AbstractContextManager[str] = tempfile.TemporaryDirectory(prefix="geoseg-peer-")
    else:
        work_dir = nullcontext(str(args.workdir))
    with work_dir as tmp:
        work = Path(tmp)
        results = []
        for size in args.sizes:
            results.append(rounded(measure(size, work, args)))
            print(table(results[-1], args), end="\n\n", flush=True)
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
