"""Zion: does aligning the east's inputs with the west's help a trained model?

    python benchmarks/zion_alignment.py outputs/zion/balanced.geoseg   # ~2 min on one core

Three `geoseg evaluate` runs of one package on the eastern 40 % (cols 677:), the same labels:
the scene as it is; the package's normalization moved to the east's own band mean and std
(per-scene standardization); the east's bands mapped onto the west's distribution by
quantiles (histogram matching). Both alignments use east pixels only, never east labels.
Prints the band statistics of both parts and OA / macro-F1 / mIoU / per-class F1 per variant.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import rasterio

from geoseg.models.package import load_package, save_package

REPO = Path(__file__).resolve().parents[1]
ZION = REPO.parent / "shared" / "data" / "zion"
SPLIT_COL = 677
GEOSEG = str(Path(sys.executable).with_name("geoseg"))


def band_stats(image: np.ndarray, valid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-band mean and std over the valid pixels of (bands, rows, cols)."""
    values = image[:, valid].astype(np.float64)
    return values.mean(axis=1), values.std(axis=1)


def matched_to(east: np.ndarray, west: np.ndarray, quantiles: int = 1001) -> np.ndarray:
    """``east`` values mapped band by band onto the distribution of ``west`` (1-D each)."""
    qs = np.linspace(0, 1, quantiles)
    return np.interp(east.astype(np.float64), np.quantile(east, qs), np.quantile(west, qs))


def evaluate(model: Path, image: Path, out: Path) -> dict:
    """``geoseg evaluate`` on the east; its report.json."""
    cmd = [
        GEOSEG, "evaluate", "--model", str(model), "--image", str(image),
        "--labels", str(ZION / "labels.tif"), "--window", f"cols={SPLIT_COL}:",
        "--device", "cpu", "--threads", "1", "--out", str(out),
    ]  # fmt: skip
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return json.loads((out / "report.json").read_text())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", type=Path)
    parser.add_argument("--workdir", type=Path, default=REPO / "outputs" / "zion" / "alignment")
    args = parser.parse_args(argv)
    work = args.workdir
    work.mkdir(parents=True, exist_ok=True)
    with rasterio.open(ZION / "image.tif") as src:
        image, profile, nodata = src.read(), src.profile, src.nodata
    valid = np.all(image != nodata, axis=0)
    west_valid, east_valid = valid.copy(), valid.copy()
    west_valid[:, SPLIT_COL:] = False
    east_valid[:, :SPLIT_COL] = False
    (wm, ws), (em, es) = band_stats(image, west_valid), band_stats(image, east_valid)
    for what, w, e in (("means", wm, em), ("stds", ws, es)):
        pairs = " | ".join(f"{a:.0f} / {b:.0f}" for a, b in zip(w, e, strict=True))
        print(f"band {what} west / east: {pairs}")

    package = load_package(args.model)
    norm = package.metadata.normalization
    pm, ps = np.array(norm.mean), np.array(norm.std)
    # (x - mean') / std' == standardize x with the east's stats, then undo it with the west's
    scene_norm = norm.model_copy(
        update={"mean": (pm + (em - wm) * ps / ws).tolist(), "std": (ps * es / ws).tolist()}
    )
    scene_pkg = save_package(
        work / "scene-norm.geoseg",
        package.build(),
        package.metadata.model_copy(update={"normalization": scene_norm}),
    )
    matched = image.copy()
    for b in range(image.shape[0]):
        band = matched[b]
        mapped = matched_to(band[east_valid], image[b][west_valid])
        band[east_valid] = np.clip(np.round(mapped), 0, nodata - 1).astype(band.dtype)
    matched_tif = work / "hist-matched.tif"
    with rasterio.open(matched_tif, "w", **profile) as dst:
        dst.write(matched)

    variants = {
        "as is": (args.model, ZION / "image.tif"),
        "per-scene standardization": (scene_pkg, ZION / "image.tif"),
        "histogram matching": (args.model, matched_tif),
    }
    print("\n| inputs | OA | macro-F1 | mIoU | F1 per class |\n| --- | --- | --- | --- | --- |")
    for i, (name, (model, tif)) in enumerate(variants.items()):
        r = evaluate(model, tif, work / f"report-{i}")
        f1 = ", ".join(f"{c['name']} {c['f1'] or 0:.2f}" for c in r["classes"])
        print(
            f"| {name} | {r['overall_accuracy']:.3f} | {r['macro_f1']:.3f} "
            f"| {r['miou']:.3f} | {f1} |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
