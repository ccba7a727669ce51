"""Zanzibar models on Kampala: the package's band statistics against Kampala's own.

    python benchmarks/buildings_scene_norm.py outputs/buildings/zanzibar-s0.geoseg ...

A model normalizes its input with the mean and standard deviation of its training bands.
Kampala's imagery is redder and of higher contrast than Zanzibar's, so one may normalize a
scene with its own statistics instead (a per-scene normalization). For each package this
writes a copy whose normalization holds the statistics of the Kampala window it is scored
on and runs ``geoseg evaluate --tta`` with both. The Zanzibar models never saw Kampala, so
its western 60 % is a fair place to choose; the east is reported.
"""

from __future__ import annotations

import argparse
import json
import subprocess
from pathlib import Path

import numpy as np
import rasterio
from buildings import DATA, GEOSEG, OUT, REPO, building_figures, split_col  # beside this file

from geoseg.models.package import load_package, save_package

WORK = OUT / "scene-norm"
KAMPALA = DATA / "kampala"


def band_stats(image: Path, cols: slice) -> tuple[list[float], list[float]]:
    """Mean and standard deviation of each band over the valid pixels of ``cols``."""
    with rasterio.open(image) as src:
        bands = src.read().astype(np.float64)[:, :, cols]
        valid = src.read_masks(1)[:, cols] > 0
    return [float(b[valid].mean()) for b in bands], [float(b[valid].std()) for b in bands]


def with_stats(package: Path, mean: list[float], std: list[float], out: Path) -> Path:
    """A copy of ``package`` that normalizes with ``mean`` and ``std``."""
    loaded = load_package(package)
    norm = loaded.metadata.normalization.model_copy(update={"mean": mean, "std": std})
    meta = loaded.metadata.model_copy(update={"normalization": norm})
    return save_package(out, loaded.build(), meta)


def building_iou(package: Path, window: str, out: Path) -> float:
    cmd = [
        *GEOSEG, "evaluate", "--model", str(package), "--image", str(KAMPALA / "image.tif"),
        "--labels", str(KAMPALA / "labels.tif"), "--window", window,
        "--threads", "1", "--tta", "--out", str(out),
    ]  # fmt: skip
    subprocess.run(cmd, check=True, cwd=REPO, stdout=subprocess.DEVNULL)
    return building_figures(json.loads((out / "report.json").read_text()))[0]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("packages", nargs="+", type=Path)
    args = parser.parse_args(argv)
    WORK.mkdir(parents=True, exist_ok=True)
    split = split_col("kampala")
    windows = {  # name -> (window, Kampala's band statistics there), read once
        "west": (f"cols=0:{split}", band_stats(KAMPALA / "image.tif", slice(0, split))),
        "east": (f"cols={split}:", band_stats(KAMPALA / "image.tif", slice(split, None))),
    }
    print("| package | west, package stats | west, own stats | east, package | east, own |")
    print("| --- | --- | --- | --- | --- |")
    for package in args.packages:
        figures = []
        for name, (window, (mean, std)) in windows.items():
            own = with_stats(package, mean, std, WORK / f"{package.stem}-{name}.geoseg")
            for model, tag in ((package, "package"), (own, "own")):
                out = WORK / f"{package.stem}-{tag}-on-kampala-{name}"
                figures.append(building_iou(model, window, out))
        print(f"| {package.name} | " + " | ".join(f"{v:.3f}" for v in figures) + " |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
