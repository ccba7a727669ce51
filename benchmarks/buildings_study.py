"""What makes a building model good: one change at a time, chosen on the west.

    python benchmarks/buildings_study.py                       # trains every variant (~25 min each)
    python benchmarks/buildings_study.py --reuse               # score packages already trained
    python benchmarks/buildings_study.py --variants baseline fcn8s elastic
    python benchmarks/buildings_study.py --region zanzibar --variants resnet34 tile512
    python benchmarks/buildings_study.py --region zanzibar --variants baseline ema --seed 1
    python benchmarks/buildings_study.py --region zanzibar --variants polish-lovasz --seed 2

Each variant is ``geoseg train --config configs/fair-<region>.yaml`` (Kampala by default;
smp U-Net/ResNet-18, CE + dice, random tile sampling, flips/rotations + scale + colour
jitter, 256 px tiles) with one change on the command line, seed 0 (or ``--seed``), one torch
thread. The table shows what the choice is made on, validation mIoU and building IoU on
blocks held out inside the western 60 %, beside the eastern 40 % scored by ``geoseg evaluate
--tta`` (building IoU, object F1 at IoU >= 0.5), the epochs run and the training wall and
CPU time. The eastern columns are reported, never used to choose.
"""

from __future__ import annotations

import argparse
import shlex
import subprocess
from pathlib import Path

from buildings import GEOSEG, OUT, REPO, building_figures, evaluate_east  # beside this file

from geoseg.models.package import PackageMetadata, load_package

REGIONS = ("kampala", "zanzibar")
STUDY = OUT / "study"
VARIANTS: dict[str, tuple[str, ...]] = {
    "baseline": (),
    "fcn8s": ("--arch", "fcn8s", "--decoder-channels", ""),
    "deeplabv3plus": ("--arch", "smp-deeplabv3plus", "--decoder-channels", ""),  # ASPP, stride 16
    "elastic": ("--elastic-px", "6"),
    "strong-colour": ("--brightness", "0.4", "--contrast", "0.4"),
    "blur-haze": ("--blur-px", "1.5", "--haze", "0.3"),
    "ce": ("--loss", "ce"),
    "focal": ("--loss", "focal"),
    "balanced-sampling": ("--sampling", "balanced"),
    "no-augment": ("--no-augment",),
    "resnet34": ("--encoder", "resnet34"),
    "wide-decoder": ("--decoder-channels", "256,128,64,32,16"),  # smp's default widths
    "tile512": ("--tile-size", "512", "--batch-size", "2"),  # more context, same pixels a step
    "ema": ("--ema-decay", "0.99"),  # validate and package the weights averaged over ~100 steps
    "weight-decay": ("--weight-decay", "5e-4"),  # L2 through Adam, against overfitting
    # a fixed-length cosine schedule instead of the plateau one, no early stop
    "cosine70": ("--lr-schedule", "cosine", "--epochs", "70", "--early-stopping", "0"),
    "cosine40": ("--lr-schedule", "cosine", "--epochs", "40", "--early-stopping", "0"),
    # transfer: the encoder of the Zanzibar model (`make buildings` trains it first)
    "from-zanzibar": ("--encoder-weights", "outputs/buildings/zanzibar-s0.geoseg"),
    # fine-tuning: every weight of the Zanzibar model, at the config's and a fifth of its lr
    "tune-zanzibar": ("--init-weights", "outputs/buildings/zanzibar-s0.geoseg"),
    "tune-zanzibar-lr2e-4": (
        "--init-weights",
        "outputs/buildings/zanzibar-s0.geoseg",
        "--lr",
        "2e-4",
    ),
}


TRANSFER = ("from-zanzibar", "tune-zanzibar", "tune-zanzibar-lr2e-4")
"""Variants that start from the Zanzibar model: Kampala only."""

POLISH = ("--lr", "1e-4", "--epochs", "30", "--early-stopping", "10")
VARIANTS["polish-lovasz"] = ("--loss", "lovasz", *POLISH)
VARIANTS["polish-ce-dice"] = POLISH  # the control: as long, at the same lr, the same loss
OWN_MODEL = ("polish-lovasz", "polish-ce-dice")
"""Variants that fine-tune the region's `make buildings` model of the same seed, so of the
same validation blocks: a second stage whose validation compares with the first's."""


def change_args(region: str, variant: str, seed: int) -> tuple[str, ...]:
    """The command-line change of a variant; own-model variants start from that package."""
    if variant in OWN_MODEL:
        return ("--init-weights", f"outputs/buildings/{region}-s{seed}.geoseg", *VARIANTS[variant])
    return VARIANTS[variant]


def package_of(region: str, variant: str, seed: int = 0) -> Path:
    """Seed 0 keeps the names of the first study's packages; other seeds add ``-s<seed>``."""
    return STUDY / f"{region}-{variant}{f'-s{seed}' if seed else ''}.geoseg"


def train(region: str, variant: str, threads: int, seed: int) -> None:
    config = REPO / "configs" / f"fair-{region}.yaml"
    cmd = [
        *GEOSEG, "train", "--config", str(config), *change_args(region, variant, seed),
        "--seed", str(seed), "--threads", str(threads),
        "--out", str(package_of(region, variant, seed)),
    ]  # fmt: skip
    subprocess.run(cmd, check=True, cwd=REPO)


def row(region: str, variant: str, seed: int, meta: PackageMetadata, report: dict) -> str:
    m, t = meta.metrics, meta.training
    iou, f1 = building_figures(report)
    change = shlex.join(change_args(region, variant, seed)) or f"(configs/fair-{region}.yaml)"
    return (
        f"| {variant} | `{change}` | {m['validation_miou']:.3f} "
        f"| {m['validation_iou']['Building']:.3f} | {iou:.3f} | {f1:.3f} "
        f"| {t['epochs_run']} (best {t['best_epoch']}) "
        f"| {t['seconds'] / 60:.0f} / {t['cpu_seconds'] / 60:.0f} |"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--variants", nargs="+", choices=list(VARIANTS), help="default: all for the region"
    )
    parser.add_argument("--region", choices=REGIONS, default="kampala")
    parser.add_argument("--reuse", action="store_true", help="score existing packages")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0, help="training seed (default 0)")
    args = parser.parse_args(argv)
    region = args.region
    variants = args.variants or [v for v in VARIANTS if region == "kampala" or v not in TRANSFER]
    if region != "kampala" and set(variants) & set(TRANSFER):
        parser.error(f"{', '.join(TRANSFER)} start from the Zanzibar model: Kampala only")
    STUDY.mkdir(parents=True, exist_ok=True)
    lines = [
        "| variant | change | val mIoU | val building IoU | east building IoU (TTA) "
        "| east object F1 | epochs | wall / CPU min |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for variant in variants:
        package = package_of(region, variant, args.seed)
        if not (args.reuse and package.exists()):
            train(region, variant, args.threads, args.seed)
        out = STUDY / f"{package.stem}-on-{region}-tta"
        report = evaluate_east([package], region, out, threads=args.threads, tta=True)
        lines.append(row(region, variant, args.seed, load_package(package).metadata, report))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
