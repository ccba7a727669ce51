"""Remote reads: bytes fetched for a window of a Sentinel-2-sized COG, and prediction over HTTP.

    python benchmarks/remote_read.py                  # ~40 s on 2 idle cores
    python benchmarks/remote_read.py --gdal VSI_CACHE=FALSE --gdal GDAL_HTTP_MULTIPLEX=NO

Both parts read through a real nginx on loopback (byte ranges; `tests.support.servers`).

1. A 10980 x 10980 uint16 COG (a Sentinel-2 10 m tile: 512 px blocks, DEFLATE + predictor 2,
   overviews; a smooth pattern plus noise, written strip by strip) is served over HTTP, and a
   512 x 512 window at an interior offset is read the way `geoseg run` reads a remote raster:
   `read_header`, a one-band VRT from `vrt_xml`, `ReadPlan.read`, inside `gdal_remote_env`.
   Fetched = body bytes in nginx's access log (every request, header reads included);
   needed = the COG's header region (TIFF header, ghost area and every IFD: the bytes before
   the first tile's data) + the compressed sizes of the blocks the window touches (TIFF tags
   BLOCK_OFFSET_x_y / BLOCK_SIZE_x_y).
2. The prediction stage (`timings_s["predict"]` of `geoseg.pipeline.run.run`, no Dask, the
   demo model, the whole scene as AOI) on a synthetic 4-band scene read (a) as the local
   stacked GeoTIFF, (b) as an Earth Search-style STAC item of per-band COGs (+ the 20 m SCL
   cloud mask, as `--cloud-mask auto` reads it) served by nginx, and (c) the same item with
   local file hrefs (separates the HTTP cost from the per-band VRT cost). Runs are interleaved
   (a, b, c, a, b, c, ...) after one untimed warm-up run; best of ``--repeats`` each. Each
   remote run reads its COGs under a fresh URL (a symlinked folder), so GDAL's process-wide
   /vsicurl/ cache never serves a run the bytes an earlier one fetched. The class rasters of
   (a), (b) and (c) are compared pixel by pixel.

``--gdal KEY=VALUE`` sets a GDAL option in the environment first: `gdal_remote_env` never
overrides the environment, so this measures a changed default without editing it.
"""

# ruff: noqa: E402 (tests.support is importable once the repo root is on sys.path)
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # tests.support: the nginx and STAC item helpers

import numpy as np
import rasterio
import rasterio.shutil
import shapely
from affine import Affine
from rasterio.windows import Window

from geoseg.config import RunSettings
from geoseg.geo.window import PixelWindow
from geoseg.io.pixels import ReadPlan
from geoseg.models import DEMO_MODEL
from geoseg.pipeline.record import RunReport
from geoseg.pipeline.run import run
from geoseg.sources.gdal_env import gdal_remote_env
from geoseg.sources.headers import read_header
from geoseg.sources.vrt import VrtBand, vrt_xml
from geoseg.synthetic import write_aoi_geojson, write_synthetic_scene
from tests.support.servers import HttpServer, LogLine, nginx_server
from tests.support.stac_items import earth_search_item, write_item

S2_TILE_PX = 10980
S2_BLOCK_PX = 512
WINDOW_PX = 512


# ---------------------------------------------------------------------------------------------
# 1. Bytes fetched for one window.


def write_tile_cog(path: Path, size: int, seed: int = 0) -> Path:
    """A size x size uint16 COG like a Sentinel-2 band file; memory: one 512-row strip."""
    strips = path.with_name(path.stem + ".strips.tif")
    profile = {
        "driver": "GTiff",
        "width": size,
        "height": size,
        "count": 1,
        "dtype": "uint16",
        "crs": "EPSG:32633",
        "transform": Affine(10.0, 0.0, 300000.0, 0.0, -10.0, 5100000.0),
        "tiled": True,
        "blockxsize": S2_BLOCK_PX,
        "blockysize": S2_BLOCK_PX,
        "nodata": 0,
    }
    rng = np.random.default_rng(seed)
    cols = np.arange(size, dtype=np.float64)[None, :]
    with rasterio.open(strips, "w", **profile) as dst:
        for row in range(0, size, S2_BLOCK_PX):
            h = min(S2_BLOCK_PX, size - row)
            rows = np.arange(row, row + h, dtype=np.float64)[:, None]
            smooth = (
                2500.0
                + 1200.0 * np.sin(cols / 350.0) * np.cos(rows / 470.0)
                + 400.0 * np.sin((cols + 2.0 * rows) / 60.0)
            )
            values = smooth + rng.normal(0.0, 40.0, (h, size))
            dst.write(
                np.clip(values, 1, 65535).astype(np.uint16), 1, window=Window(0, row, size, h)
            )
    rasterio.shutil.copy(
        strips,
        path,
        driver="COG",
        blocksize=S2_BLOCK_PX,
        compress="DEFLATE",
        predictor=2,
        num_threads="ALL_CPUS",
    )
    strips.unlink()
    return path


def needed_bytes(path: Path, window: PixelWindow) -> dict[str, Any]:
    """The header region and the compressed blocks of full resolution that ``window`` touches."""
    with rasterio.open(path) as ds:
        levels = [None, *range(len(ds.overviews(1)))]
        first_data = min(
            int(ds.get_tag_item("BLOCK_OFFSET_0_0", "TIFF", bidx=1, ovr=o)) for o in levels
        )
        bh, bw = ds.block_shapes[0]
        rows = range(window.row_off // bh, (window.row_end - 1) // bh + 1)
        cols = range(window.col_off // bw, (window.col_end - 1) // bw + 1)
        sizes = [
            int(ds.get_tag_item(f"BLOCK_SIZE_{c}_{r}", "TIFF", bidx=1)) for r in rows for c in cols
        ]
    return {"header": first_data, "blocks": len(sizes), "block_bytes": sum(sizes)}


def window_fetch(server: HttpServer, cog: Path, offset: int) -> dict[str, Any]:
    """Read a 512 px window of the served ``cog`` the way a run reads a remote raster."""
    url = f"{server.url}/{cog.name}"
    window = PixelWindow(offset, offset, WINDOW_PX, WINDOW_PX)
    server.clear_log()
    t0 = time.perf_counter()
    with gdal_remote_env([url]), tempfile.TemporaryDirectory(prefix="geoseg-vrt-") as vrt_dir:
        header = read_header(url, "benchmark COG")
        band = VrtBand(
            header.path,
            1,
            header.grid,
            header.dtypes[0],
            header.nodata,
            header.block,
            "nearest",
            "band",
        )
        vrt = Path(vrt_dir) / "window.vrt"
        vrt.write_text(vrt_xml(header.grid, [band]), encoding="utf-8")
        with rasterio.open(vrt) as ds:
            data, valid, _ = ReadPlan((1,)).read(ds, window)
    seconds = time.perf_counter() - t0
    requests = server.requests()
    with rasterio.open(cog) as ds:
        local = ds.read(1, window=window.to_rasterio())
    if not np.array_equal(data[0], local) or not valid.all():
        raise RuntimeError("the remote window differs from the local read of the same window")
    need = needed_bytes(cog, window)
    fetched = sum(r.body_bytes for r in requests)
    needed = need["header"] + need["block_bytes"]
    return {
        "cog": f"{header.grid.width}x{header.grid.height} uint16, {S2_BLOCK_PX} px blocks, "
        "DEFLATE + predictor 2",
        "file_bytes": cog.stat().st_size,
        "window": f"{WINDOW_PX}x{WINDOW_PX} at row/col {offset}",
        "blocks_touched": need["blocks"],
        "header_region_bytes": need["header"],
        "block_bytes": need["block_bytes"],
        "needed_bytes": needed,
        "fetched_bytes": fetched,
        "requests": len(requests),
        "ratio_fetched_over_needed": round(fetched / needed, 3),
        "share_of_file": round(fetched / cog.stat().st_size, 5),
        "seconds": round(seconds, 3),
        "request_log": [describe(r) for r in requests],
    }


def describe(line: LogLine) -> str:
    return f"{line.method} {line.status} {line.range or 'whole'} -> {line.body_bytes} B"


# ---------------------------------------------------------------------------------------------
# 2. Prediction over HTTP vs local.


def rebased(item: dict[str, Any], base: str) -> dict[str, Any]:
    """``item`` with every asset href at ``base``/<file name>."""
    doc = json.loads(json.dumps(item))
    for entry in doc["assets"].values():
        entry["href"] = f"{base.rstrip('/')}/{entry['href'].rsplit('/', 1)[-1]}"
    return doc


def one_run(scene: str, aoi: Path, out: Path, readers: int | None) -> tuple[RunReport, float]:
    settings = RunSettings(
        aoi=aoi, scenes=[scene], models=[DEMO_MODEL], out=out, workers=0, reader_threads=readers
    )
    report = run(settings)
    return report, report.scenes[0].timings_s["predict"]


def classes_of(report: RunReport) -> tuple[np.ndarray, Affine]:
    with rasterio.open(report.scenes[0].outputs["classes"]) as ds:
        return ds.read(1), ds.transform


def whole_file_needed(path: Path) -> int:
    """Bytes a read of every full-resolution pixel needs: header region + all its blocks."""
    with rasterio.open(path) as ds:
        need = needed_bytes(path, PixelWindow(0, 0, ds.height, ds.width))
    return need["header"] + need["block_bytes"]


def predict_side_by_side(
    server: HttpServer, www: Path, tmp: Path, *, size: int, repeats: int, readers: int | None
) -> dict[str, Any]:
    scene = write_synthetic_scene(tmp / "scene", size, seed=101)
    spec = scene.spec
    left, top = spec.origin_x, spec.origin_y
    whole = shapely.box(left, top - size * spec.res_m, left + size * spec.res_m, top)
    aoi = tmp / "aoi.geojson"
    write_aoi_geojson(whole, spec.crs, aoi)

    cogs = www / "s2"
    item = earth_search_item(scene.image_path, cogs, href_base=f"{server.url}/s2")
    band_files = sorted(cogs.glob("*.tif"))
    local_item = write_item(rebased(item, str(cogs.resolve())), tmp / "local-item.json")

    runs = 0
    fetches: list[dict[str, int]] = []

    def local() -> RunReport:
        return one_run(str(scene.image_path), aoi, tmp / f"out-{runs}", readers)[0]

    def item_local() -> RunReport:
        return one_run(str(local_item), aoi, tmp / f"out-{runs}", readers)[0]

    def remote() -> RunReport:
        folder = f"s2-{runs}"  # a fresh URL: nothing in GDAL's /vsicurl/ cache
        (www / folder).symlink_to(cogs.resolve(), target_is_directory=True)
        write_item(rebased(item, f"{server.url}/{folder}"), cogs / f"item-{runs}.json")
        server.clear_log()
        report = one_run(
            f"{server.url}/{folder}/item-{runs}.json", aoi, tmp / f"out-{runs}", readers
        )[0]
        lines = [r for r in server.requests() if r.uri.endswith(".tif")]
        fetches.append({"requests": len(lines), "bytes": sum(r.body_bytes for r in lines)})
        return report

    variants = {"a_local_geotiff": local, "b_http_item": remote, "c_local_item": item_local}
    local()  # warm-up: model load, first-touch costs; not counted
    times: dict[str, list[float]] = {k: [] for k in variants}
    last: dict[str, RunReport] = {}
    for _ in range(repeats):
        for key, variant in variants.items():
            runs += 1
            last[key] = variant()
            times[key].append(last[key].scenes[0].timings_s["predict"])

    window_px = last["a_local_geotiff"].scenes[0].window_px
    best = {k: min(v) for k, v in times.items()}
    ref, ref_transform = classes_of(last["a_local_geotiff"])
    same = {}
    for key in ("b_http_item", "c_local_item"):
        other, transform = classes_of(last[key])
        same[key] = bool(transform == ref_transform and np.array_equal(other, ref))
    needed = sum(whole_file_needed(p) for p in band_files)
    return {
        "scene_px": f"{size}x{size}",
        "aoi_px": window_px,
        "reader_threads": readers or "default",
        "predict_s": {k: [round(t, 3) for t in v] for k, v in times.items()},
        "best_mpx_s": {k: round(window_px / t / 1e6, 3) for k, t in best.items()},
        "ratio_local_over_http": round(best["a_local_geotiff"] / best["b_http_item"], 3),
        "ratio_local_over_local_item": round(best["a_local_geotiff"] / best["c_local_item"], 3),
        "ratio_local_item_over_http": round(best["c_local_item"] / best["b_http_item"], 3),
        "http_files": [p.name for p in band_files],
        "http_files_bytes": sum(p.stat().st_size for p in band_files),
        "http_needed_bytes": needed,
        "http_requests_per_run": [f["requests"] for f in fetches],
        "http_fetched_bytes_per_run": [f["bytes"] for f in fetches],
        "http_ratio_fetched_over_needed": [round(f["bytes"] / needed, 3) for f in fetches],
        "classes_identical_to_a": same,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--size", type=int, default=2048, help="synthetic scene side in px (part 2)")
    p.add_argument("--repeats", type=int, default=3, help="timed runs of each variant (part 2)")
    p.add_argument("--cog-size", type=int, default=S2_TILE_PX, help="COG side in px (part 1)")
    p.add_argument("--offset", type=int, default=5000, help="window row/col offset (part 1)")
    p.add_argument("--readers", type=int, default=None, help="reader threads (default: the run's)")
    p.add_argument("--gdal", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--skip-window", action="store_true", help="part 2 only")
    args = p.parse_args()
    for option in args.gdal:
        key, _, value = option.partition("=")
        os.environ[key] = value

    t0 = time.perf_counter()
    result: dict[str, Any] = {"gdal_options_set": args.gdal, "gdal": rasterio.__gdal_version__}
    with tempfile.TemporaryDirectory(prefix="geoseg-bench-") as tmp_name:
        tmp = Path(tmp_name)
        www = tmp / "www"
        www.mkdir()
        with nginx_server(www) as server:
            if not args.skip_window:
                t1 = time.perf_counter()
                cog = write_tile_cog(www / "B04.tif", args.cog_size)
                result["cog_write_s"] = round(time.perf_counter() - t1, 1)
                result["1_window"] = window_fetch(server, cog, args.offset)
                cog.unlink()
            result["2_predict"] = predict_side_by_side(
                server, www, tmp, size=args.size, repeats=args.repeats, readers=args.readers
            )
    result["wall_s"] = round(time.perf_counter() - t0, 1)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
