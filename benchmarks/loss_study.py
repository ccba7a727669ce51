"""Rare-class study: the same small model trained with CE, weighted CE and focal loss.

    python benchmarks/loss_study.py              # or: make study (~5 min per seed on one core)
    python benchmarks/loss_study.py --seeds 0 --epochs 10   # a quicker look

Synthetic scenes where built-up (towns and roads) is rare: 512 px scenes of seeds 59 and 66
(built-up 1.3 % and 1.4 % of the pixels) for training, seed 67 (1.5 %) for evaluation. Every
loss gets the same model (U-Net, width 1/8, 0.5 M parameters), data, tile sampling, seed and
budget (epochs x steps x batch); the only difference is the loss. The evaluation runs
`geoseg.training.evaluate` (the tiled, blended prediction of `geoseg run`) on the whole third
scene and prints the rare-class IoU/F1, mIoU and overall accuracy per loss (the mean over
``--seeds``).

The pieces (`write_study_scenes`, `study_settings`, `run_loss`, `study_row`, `markdown_table`)
are importable: notebooks/train_and_evaluate.ipynb runs the same study at a tiny budget.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import torch

from geoseg.synthetic import (
    BUILT_UP,
    SYNTHETIC_CLASSES,
    SyntheticScene,
    make_landscape,
    write_synthetic_scene,
)
from geoseg.training.evaluate import EvaluateSettings, EvaluationReport, evaluate
from geoseg.training.loop import TrainResult, train
from geoseg.training.settings import TrainSettings, load_train_settings

REPO = Path(__file__).resolve().parents[1]
TRAIN_SEEDS = (59, 66)
EVAL_SEED = 67
SIZE_PX = 512
RARE = BUILT_UP
LOSSES = ("ce", "weighted-ce", "focal")


def rare_share(seed: int, size_px: int = SIZE_PX) -> float:
    """Share of the rare class among the pixels of the synthetic scene of ``seed``."""
    labels = make_landscape(size_px, seed).labels
    return float((labels == RARE).mean())


@dataclass(frozen=True)
class Budget:
    """What every loss gets: epochs x steps x batch tiles of ``tile_px``, on ``threads`` cores."""

    epochs: int = 20
    steps: int = 20
    batch: int = 8
    tile_px: int = 128
    threads: int = 1

    def __str__(self) -> str:
        steps = f"{self.epochs} epochs x {self.steps} steps"
        return f"{steps} x {self.batch} tiles of {self.tile_px} px"


def write_study_scenes(
    root: Path, size_px: int = SIZE_PX
) -> tuple[list[SyntheticScene], SyntheticScene]:
    """The training scenes (`TRAIN_SEEDS`) and the evaluation scene (`EVAL_SEED`) under root."""
    train_scenes = [write_synthetic_scene(root / f"s{s}", size_px, s) for s in TRAIN_SEEDS]
    return train_scenes, write_synthetic_scene(root / f"s{EVAL_SEED}", size_px, EVAL_SEED)


def study_settings(
    train_scenes: Sequence[SyntheticScene], out: Path, loss: str, seed: int, budget: Budget
) -> TrainSettings:
    """Training settings of one run of the study: everything but ``loss`` and ``seed`` fixed."""
    return load_train_settings(
        None,
        {
            "image": [s.image_path for s in train_scenes],
            "labels": [s.labels_path for s in train_scenes],
            "out": out,
            "arch": "unet",
            "width": 0.125,
            "loss": loss,
            "epochs": budget.epochs,
            "steps_per_epoch": budget.steps,
            "batch_size": budget.batch,
            "tile_size": budget.tile_px,
            "val_block": 128,
            "lr": 3e-3,
            "early_stopping": 0,
            "seed": seed,
            "device": "cpu",
            "threads": budget.threads,
        },
    )


def study_row(trained: TrainResult, report: EvaluationReport) -> dict[str, float]:
    """The figures the study compares for one trained and evaluated model."""
    s = report.scores
    return {
        "rare_iou": float(s.iou[RARE]),
        "rare_f1": float(s.f1[RARE]),
        "rare_recall": float(s.recall[RARE]),
        "rare_precision": float(np.nan_to_num(s.precision[RARE])),
        "miou": s.miou,
        "macro_f1": s.macro_f1,
        "overall_accuracy": s.overall_accuracy,
        "train_seconds": trained.seconds,
    }


def run_loss(
    train_scenes: Sequence[SyntheticScene],
    test: SyntheticScene,
    out: Path,
    *,
    loss: str,
    seed: int,
    budget: Budget,
) -> tuple[TrainResult, EvaluationReport]:
    """Train one model with ``loss`` (package written to ``out``) and evaluate it on ``test``.

    The evaluation is `geoseg.training.evaluate`: the tiled, blended prediction of `geoseg run`
    over the whole test scene, scored against its labels.
    """
    trained = train(study_settings(train_scenes, out, loss, seed, budget))
    report = evaluate(
        EvaluateSettings(
            model=trained.package, image=test.image_path, labels=test.labels_path, device="cpu"
        )
    )
    return trained, report


def markdown_table(results: dict[str, list[dict[str, float]]]) -> str:
    """The README table: per loss the mean over seeds, and the rare-class IoU of each seed."""
    rare_name = SYNTHETIC_CLASSES[RARE].name
    header = (
        f"| loss | {rare_name} IoU | {rare_name} F1 | {rare_name} recall | "
        f"{rare_name} precision | mIoU | macro-F1 | OA | {rare_name} IoU per seed |"
    )
    lines = [header, "|---" * (header.count("|") - 1) + "|"]
    keys = ("rare_iou", "rare_f1", "rare_recall", "rare_precision", "miou", "macro_f1")
    for loss, rows in results.items():
        mean = {k: float(np.mean([r[k] for r in rows])) for k in (*keys, "overall_accuracy")}
        cells = " | ".join(f"{mean[k]:.3f}" for k in (*keys, "overall_accuracy"))
        per_seed = ", ".join(f"{r['rare_iou']:.2f}" for r in rows)
        lines.append(f"| {loss} | {cells} | {per_seed} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="seeds")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--steps", type=int, default=20, help="steps per epoch")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--tile", type=int, default=128)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "out" / "loss_study")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rare_name = SYNTHETIC_CLASSES[RARE].name
    shares = {seed: rare_share(seed) for seed in (*TRAIN_SEEDS, EVAL_SEED)}
    print(
        f"rare class: {rare_name}; share of pixels: "
        + ", ".join(f"seed {s} {100 * v:.2f} %" for s, v in shares.items())
    )
    if not all(v < 0.02 for v in shares.values()):
        raise SystemExit(f"the rare class must cover < 2 % of every scene: {shares}")
    budget = Budget(args.epochs, args.steps, args.batch, args.tile, args.threads)
    print(f"model: unet width 1/8; budget per loss: {budget}; seeds {args.seeds}")
    args.out.mkdir(parents=True, exist_ok=True)
    results: dict[str, list[dict[str, float]]] = {loss: [] for loss in LOSSES}
    with tempfile.TemporaryDirectory(prefix="geoseg-study-") as tmp:
        root = Path(tmp)
        train_scenes, test = write_study_scenes(root)
        for seed in args.seeds:
            for loss in LOSSES:
                t0 = time.perf_counter()
                out = root / f"{loss}-{seed}.geoseg"
                trained, report = run_loss(
                    train_scenes, test, out, loss=loss, seed=seed, budget=budget
                )
                row = study_row(trained, report)
                results[loss].append(row)
                print(
                    f"  seed {seed} {loss:<12} {rare_name} IoU {row['rare_iou']:.3f} "
                    f"mIoU {row['miou']:.3f} OA {row['overall_accuracy']:.3f} "
                    f"({time.perf_counter() - t0:.0f}s)",
                    flush=True,
                )
    print()
    print(f"mean over seeds {args.seeds}; last column: {rare_name} IoU of each seed")
    print(markdown_table(results))
    (args.out / "results.json").write_text(
        json.dumps({"budget": str(budget), "seeds": args.seeds, "results": results}, indent=2)
    )
    print(f"\nper-run results: {args.out / 'results.json'}")


if __name__ == "__main__":
    main()
