"""The peer of `geoseg run`: what a user would otherwise write with torchgeo, runnable alone.

    python benchmarks/peer_script.py SCENE.tif OUT_DIR                  # the shipped demo model
    python benchmarks/peer_script.py SCENE.tif OUT_DIR --model M.geoseg --tile 512 \\
        --overlap 64 --batch 4 --device auto

A plain script, as found in tutorials: a `torchgeo.datasets.RasterDataset` over the scene, a
`GridGeoSampler` (tile, stride tile - overlap), a `DataLoader` (torchgeo's `stack_samples`,
no worker processes), the package's smp U-Net with its weights (`geoseg.models.package`, the
only geoseg import), per-band ``(x - mean) / std`` with the package's statistics, and each
tile's argmax pasted into a whole-scene uint8 array: no blending, later tiles overwrite the
overlap of earlier ones. Then one GeoTIFF (classes.tif, rasterio) and one single-pass
`rasterio.features.shapes` over the whole array into polygons.gpkg (geopandas).

Prints one JSON line on stdout: wall_s (from the start of `main`, imports excluded),
predict_s (read, normalize, infer, argmax, paste: the loop over the DataLoader), write_s,
vectorize_s, tiles, polygons.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import geopandas as gpd
import numpy as np
import rasterio
import rasterio.features
import shapely.geometry
import torch
from torch.utils.data import DataLoader
from torchgeo.datasets import RasterDataset, stack_samples
from torchgeo.samplers import GridGeoSampler

from geoseg.models.package import load_package

REPO = Path(__file__).resolve().parents[1]
NODATA = 255


def scene_dataset(path: Path, band_indexes: list[int]) -> RasterDataset:
    """A RasterDataset over one GeoTIFF returning the given 1-based bands (float32)."""
    with rasterio.open(path) as src:
        count = src.count

    class Scene(RasterDataset):
        filename_glob = path.name
        all_bands = tuple(f"B{i}" for i in range(1, count + 1))

    return Scene(paths=path, bands=[f"B{i}" for i in band_indexes])


def chip_origin(bounds: object) -> tuple[float, float]:
    """(xmin, ymax) of a sample's bounds: slices (torchgeo >= 0.8) or a BoundingBox (older)."""
    if isinstance(bounds, tuple | list) and isinstance(bounds[0], slice):
        return float(bounds[0].start), float(bounds[1].stop)
    return float(bounds.minx), float(bounds.maxy)  # type: ignore[attr-defined]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("scene", type=Path)
    p.add_argument("out", type=Path)
    p.add_argument("--model", type=Path, default=REPO / "geoseg/data/demo.geoseg")
    p.add_argument("--tile", type=int, default=512)
    p.add_argument("--overlap", type=int, default=64)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--device", default="auto", help="auto (cuda if available), cpu or cuda")
    args = p.parse_args()
    t_start = time.perf_counter()
    args.out.mkdir(parents=True, exist_ok=True)
    device = torch.device(
        ("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device
    )

    package = load_package(args.model)
    meta = package.metadata
    model = package.build().to(device).eval()
    mean = torch.tensor(meta.normalization.mean, device=device)[None, :, None, None]
    std = torch.tensor(meta.normalization.std, device=device)[None, :, None, None]
    class_ids = np.array([c.id for c in meta.classes], dtype=np.uint8)

    with rasterio.open(args.scene) as src:
        profile = src.profile
        height, width, transform, crs = src.height, src.width, src.transform, src.crs

    dataset = scene_dataset(args.scene, meta.band_indexes)
    sampler = GridGeoSampler(dataset, size=args.tile, stride=args.tile - args.overlap)
    loader = DataLoader(dataset, batch_size=args.batch, sampler=sampler, collate_fn=stack_samples)

    classes = np.full((height, width), NODATA, dtype=np.uint8)
    tiles = 0
    t0 = time.perf_counter()
    with torch.inference_mode():
        for batch in loader:
            x = (batch["image"].to(device) - mean) / std
            pred = model(x).argmax(dim=1).cpu().numpy()
            for tile_pred, bounds in zip(pred, batch["bounds"], strict=True):
                xmin, ymax = chip_origin(bounds)
                col, row = (round(v) for v in ~transform * (xmin, ymax))
                # chips at the right and top edges reach past the scene: paste what is inside
                r0, c0 = max(row, 0), max(col, 0)
                r1, c1 = min(row + args.tile, height), min(col + args.tile, width)
                if r1 > r0 and c1 > c0:
                    classes[r0:r1, c0:c1] = class_ids[
                        tile_pred[r0 - row : r1 - row, c0 - col : c1 - col]
                    ]
                tiles += 1
    predict_s = time.perf_counter() - t0

    t0 = time.perf_counter()
    profile.update(count=1, dtype="uint8", nodata=NODATA, compress="deflate", predictor=2)
    with rasterio.open(args.out / "classes.tif", "w", **profile) as dst:
        dst.write(classes, 1)
    write_s = time.perf_counter() - t0

    t0 = time.perf_counter()
    shapes = rasterio.features.shapes(
        classes, mask=classes != NODATA, connectivity=4, transform=transform
    )
    geoms, values = [], []
    for geom, value in shapes:
        geoms.append(shapely.geometry.shape(geom))
        values.append(int(value))
    polygons = gpd.GeoDataFrame({"class_id": values}, geometry=geoms, crs=crs)
    polygons.to_file(args.out / "polygons.gpkg", driver="GPKG", layer="polygons")
    vectorize_s = time.perf_counter() - t0

    result = {
        "wall_s": round(time.perf_counter() - t_start, 3),
        "predict_s": round(predict_s, 3),
        "write_s": round(write_s, 3),
        "vectorize_s": round(vectorize_s, 3),
        "tiles": tiles,
        "polygons": len(polygons),
        "device": str(device),
        "torch_threads": torch.get_num_threads(),
    }
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
