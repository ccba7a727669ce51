"""GPU path (bf16 autocast, channels_last, pinned copies): run where CUDA exists, skipped here."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from geoseg.package import load_package
from geoseg.predict import Predictor

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine"),
]


def test_cuda_bf16_agrees_with_cpu_float32(demo_model: Path) -> None:
    package = load_package(demo_model)
    rng = np.random.default_rng(0)
    mean = np.array(package.metadata.normalization.mean, dtype=np.float32)[None, :, None, None]
    raw = (mean * rng.uniform(0.5, 1.5, size=(4, 4, 256, 256))).astype(np.float32)
    valid = np.ones((4, 256, 256), dtype=bool)
    cpu = Predictor(package, torch.device("cpu"))(raw, valid)
    gpu = Predictor(package, torch.device("cuda"))(raw, valid)
    assert gpu.shape == cpu.shape
    assert (gpu.argmax(1) == cpu.argmax(1)).mean() > 0.99
    assert np.abs(gpu - cpu).max() < 0.1  # bf16 has ~3 significant digits


def test_batch_size_fills_the_device(demo_model: Path) -> None:
    predictor = Predictor(load_package(demo_model), torch.device("cuda"))
    batch = predictor.fill_device_batch_size(512, 4)
    assert batch is not None and 1 <= batch <= 64
    assert (
        Predictor(load_package(demo_model), torch.device("cpu")).fill_device_batch_size(512, 4)
        is None
    )
