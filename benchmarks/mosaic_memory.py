"""Peak memory of the AOI mosaic: four overlapping 5k x 5k scenes against one.

    python benchmarks/mosaic_memory.py                 # 5000 px scenes, 2 x 2, 10 % overlap
    python benchmarks/mosaic_memory.py --size 2000     # quicker

The mosaic (`geoseg.mosaic.write_mosaic`: merge row band by row band, vectorize block by block,
COGs) must grow with the mosaic's width, not its area. Inputs are what `geoseg run` publishes
per scene: a uint8 class raster and a uint8 confidence raster, here written block by block
from a pure function of map position (so overlapping scenes agree, as two windows of one
landscape do), each scene with its own cloud (a nodata box). Case "one" mosaics one scene over
its own extent; case "four" mosaics the 2 x 2 scenes over their union. Each case runs in its own
child process with the in-process vectorizer (`VectorizeOptions(workers=0)`: no Dask workers
whose memory the parent would not see) and GDAL's block cache at 128 MB as the `geoseg` CLI
sets it; its peak RSS is the child's ``ru_maxrss``.
Printed: peak RSS (and its rise above the RSS once the inputs were written: imports and
the input writer set the floor) and wall time per case, the mosaic's pixel count, and the
ratios four/one of peak RSS and of area (goal: the RSS ratio well below the area ratio).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import shapely
from affine import Affine
from rasterio.crs import CRS

from geoseg.classes import CLASS_NODATA
from geoseg.geo.scene import SceneGrid
from geoseg.io.outputs import classes_tags
from geoseg.io.raster import RowBandWriter
from geoseg.mosaic import MosaicSource, write_mosaic
from geoseg.mosaic.grid import mosaic_grid
from geoseg.synthetic import SYNTHETIC_CLASSES
from geoseg.vectorize import VectorizeOptions

PIXEL_M = 10.0
CELL_PX = 64
"""Side of the landscape's square parcels, in pixels (about 6,000 parcels per 5k scene)."""
CRS_UTM = CRS.from_epsg(32633)
ORIGIN = (500_000.0, 5_000_000.0)


def landscape(rows: np.ndarray, cols: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Class and confidence at global pixel (rows, cols): parcels of a hashed class whose
    borders wobble, so polygons are not plain squares. Pure in position."""
    r = rows[:, None] + (7 * np.sin(cols[None, :] / 23.0)).astype(np.int64)
    c = cols[None, :] + (7 * np.sin(rows[:, None] / 19.0)).astype(np.int64)
    cell = (r // CELL_PX) * 1_000_003 + (c // CELL_PX)
    mixed = (cell * 2_654_435_761) % (2**32)
    ids = np.array([k.id for k in SYNTHETIC_CLASSES], dtype=np.uint8)
    classes = ids[mixed % len(ids)]
    confidence = (128 + (mixed >> 8) % 120).astype(np.uint8)
    return classes, confidence


def write_scene(
    folder: Path, name: str, *, origin_px: tuple[int, int], size: int, cloud_seed: int
) -> MosaicSource:
    """One scene's class and confidence rasters at global pixel ``origin_px`` (row, col),
    with a cloud."""
    row0, col0 = origin_px
    x0, y0 = ORIGIN
    grid = SceneGrid(
        CRS_UTM,
        Affine(PIXEL_M, 0, x0 + col0 * PIXEL_M, 0, -PIXEL_M, y0 - row0 * PIXEL_M),
        size,
        size,
    )
    rng = np.random.default_rng(cloud_seed)
    cr, cc = rng.integers(0, size * 3 // 4, 2)
    side = size // 5
    tags = classes_tags(SYNTHETIC_CLASSES)
    paths = folder / f"{name}-classes.tif", folder / f"{name}-confidence.tif"
    with (
        RowBandWriter(
            paths[0], grid, nodata=CLASS_NODATA, classes=SYNTHETIC_CLASSES, tags=tags
        ) as out_c,
        RowBandWriter(paths[1], grid, nodata=None) as out_f,
    ):
        for r in range(0, size, 512):
            h = min(512, size - r)
            rows = np.arange(row0 + r, row0 + r + h)
            classes, confidence = landscape(rows, np.arange(col0, col0 + size))
            local_r, local_c = np.arange(r, r + h)[:, None], np.arange(size)[None, :]
            cloud = (
                (local_r >= cr) & (local_r < cr + side) & (local_c >= cc) & (local_c < cc + side)
            )
            classes[cloud] = CLASS_NODATA
            confidence[cloud] = 0
            out_c.write_rows(r, classes)
            out_f.write_rows(r, confidence)
    return MosaicSource(name, paths[0], paths[1], datetime=f"2024-06-0{cloud_seed % 9 + 1}")


def child(case: str, size: int, overlap: float, work: Path) -> None:
    """Build the inputs, then the mosaic; print one JSON line with peak RSS and timings."""
    step = round(size * (1 - overlap))
    layout = [(0, 0)] if case == "one" else [(0, 0), (0, step), (step, 0), (step, step)]
    t0 = time.perf_counter()
    sources = [
        write_scene(work, f"s{i}", origin_px=rc, size=size, cloud_seed=i + 1)
        for i, rc in enumerate(layout)
    ]
    t_inputs = time.perf_counter() - t0
    rss_inputs = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    extent = size + (0 if case == "one" else step)
    x0, y0 = ORIGIN
    aoi = shapely.box(x0, y0 - extent * PIXEL_M, x0 + extent * PIXEL_M, y0)
    grid = mosaic_grid(aoi, CRS_UTM, PIXEL_M)
    t0 = time.perf_counter()
    record = write_mosaic(
        work / "out",
        sources,
        grid,
        aoi,
        classes=SYNTHETIC_CLASSES,
        vectorize=VectorizeOptions(workers=0),
    )
    wall = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(
        json.dumps(
            {
                "case": case,
                "scenes": len(sources),
                "mosaic_px": grid.height * grid.width,
                "shape": [grid.height, grid.width],
                "polygons": record["polygons"],
                "nodata_in_aoi_px": record["nodata_in_aoi_px"],
                "peak_rss": peak,
                "rss_after_inputs": rss_inputs,
                "inputs_s": round(t_inputs, 1),
                "mosaic_s": round(wall, 1),
                "timings_s": record["timings_s"],
            }
        )
    )


def run_case(case: str, args: argparse.Namespace, root: Path) -> dict[str, object]:
    work = root / case
    work.mkdir()
    proc = subprocess.run(
        [sys.executable, __file__, "--child", case, "--size", str(args.size),
         "--overlap", str(args.overlap), "--work", str(work)],
        check=False, capture_output=True, text=True,
    )  # fmt: skip
    if proc.returncode != 0:
        sys.exit(f"case {case} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=5000, help="scene side in pixels")
    parser.add_argument("--overlap", type=float, default=0.1, help="share of a side shared")
    parser.add_argument("--child", choices=("one", "four"), help=argparse.SUPPRESS)
    parser.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        os.environ.setdefault("GDAL_CACHEMAX", "128")  # as the `geoseg` CLI sets it
        child(args.child, args.size, args.overlap, args.work)
        return
    with tempfile.TemporaryDirectory(prefix="geoseg-mosaic-bench-") as tmp:
        results = [run_case(case, args, Path(tmp)) for case in ("one", "four")]
    mib = 1024**2
    print(f"mosaic of {args.size} px scenes, {args.overlap:.0%} overlap, in-process vectorizer")
    print(f"{'case':6} {'scenes':>6} {'mosaic px':>12} {'polygons':>9} {'peak RSS':>10} "
          f"{'above inputs':>12} {'merge+vec+cog s':>16}")  # fmt: skip
    for r in results:
        print(
            f"{r['case']:6} {r['scenes']:>6} {r['mosaic_px']:>12,} {r['polygons']:>9,} "
            f"{r['peak_rss'] / mib:>6.0f} MiB "
            f"{(r['peak_rss'] - r['rss_after_inputs']) / mib:>8.0f} MiB {r['mosaic_s']:>16.1f}"
        )
    one, four = results
    print(
        f"ratio four/one: area {four['mosaic_px'] / one['mosaic_px']:.2f}x, "
        f"peak RSS {four['peak_rss'] / one['peak_rss']:.2f}x, "
        f"mosaic time {four['mosaic_s'] / one['mosaic_s']:.2f}x"
    )


if __name__ == "__main__":
    main()
