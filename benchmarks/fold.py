"""Batch-norm folding: the bare forward unfolded, with the structural pairs, and with traced ones.

    python benchmarks/fold.py                      # demo model, smp U-Net ResNet-18/34 (untrained)
    python benchmarks/fold.py --tile 512 --batch 4 --seconds 6 --repeats 3

`geoseg.inference.fold.fold_batch_norms` folds conv -> batch-norm pairs in two ways: by
structure (consecutive children of an ``nn.Sequential``) and, given a probe input, by tracing
(timm's ``BatchNormAct2d`` pairs, ResNet blocks). Each model is built three times, folded none /
structurally / both ways, and the three are timed in turn ``--repeats`` times on the same random
batch (channels last, inference mode, as `Predictor` runs them); the median of each is printed
with its ratio to the unfolded forward, and the largest output difference from it.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch
from torch import nn

from geoseg.inference.fold import fold_batch_norms
from geoseg.inference.heap import keep_large_allocations
from geoseg.inference.predictor import fold_probe
from geoseg.models.package import load_package
from geoseg.models.registry import build_model

REPO = Path(__file__).resolve().parents[1]


def build(name: str) -> tuple[nn.Module, int]:
    """A fresh eval model and its input bands: the demo package or smp-unet-<encoder>."""
    if name == "demo":
        package = load_package(REPO / "geoseg/data/demo.geoseg")
        return package.build(), len(package.metadata.bands)
    torch.manual_seed(0)  # untrained: speed does not depend on the weights
    args = {"in_channels": 4, "classes": 5, "encoder_name": name.removeprefix("unet-")}
    return build_model("smp-unet", args).eval(), 4


def seconds_per_batch(model: nn.Module, x: torch.Tensor, seconds: float) -> float:
    with torch.inference_mode():
        model(x)  # warm up
        n, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < seconds or n < 2:
            model(x)
            n += 1
    return (time.perf_counter() - t0) / n


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--models", nargs="+", default=["demo", "unet-resnet18", "unet-resnet34"])
    p.add_argument("--tile", type=int, default=512)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--seconds", type=float, default=6.0, help="timing length of each turn")
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args()
    keep_large_allocations()  # as `Predictor` does on the CPU
    results = {}
    for name in args.models:
        variants: dict[str, nn.Module] = {}
        for mode in ("unfolded", "structural", "structural+traced"):
            model, bands = build(name)
            probe = fold_probe(model, bands) if mode == "structural+traced" else None
            folded = 0 if mode == "unfolded" else fold_batch_norms(model, probe)
            variants[mode] = model.to(memory_format=torch.channels_last)
            results.setdefault(name, {})[f"{mode}_pairs"] = folded
        gen = torch.Generator().manual_seed(0)
        x = torch.randn(args.batch, bands, args.tile, args.tile, generator=gen)
        x = x.contiguous(memory_format=torch.channels_last)
        times: dict[str, list[float]] = {mode: [] for mode in variants}
        for model in variants.values():  # a first round untimed: oneDNN kernels, allocator
            seconds_per_batch(model, x, 0.0)
        for _ in range(args.repeats):
            for mode, model in variants.items():
                times[mode].append(seconds_per_batch(model, x, args.seconds))
        with torch.inference_mode():
            want = variants["unfolded"](x)
            diffs = {m: float((v(x) - want).abs().max()) for m, v in variants.items()}
        mpx = args.batch * args.tile**2 / 1e6
        base = statistics.median(times["unfolded"])
        for mode, runs in times.items():
            med = statistics.median(runs)
            results[name][f"{mode}_mpx_s"] = round(mpx / med, 3)
            results[name][f"{mode}_speedup"] = round(base / med, 3)
            results[name][f"{mode}_max_abs_diff"] = diffs[mode]
    print(json.dumps({"torch_threads": torch.get_num_threads(), **results}, indent=2))


if __name__ == "__main__":
    main()
