"""The model step: host or device probabilities, as the predictor gives them, with their time."""

from __future__ import annotations

import numpy as np
import torch

from geoseg.inference.model_step import DeviceModelStep, ModelStep, model_step
from geoseg.inference.predictor import Predictor
from tests.support.inference import random_reads


def test_host_step_gives_the_predictors_numpy_probabilities(cpu_predictor: Predictor) -> None:
    step = model_step(cpu_predictor, on_device=False)
    assert type(step) is ModelStep
    reads = random_reads(cpu_predictor)
    out = step(reads)
    expected = cpu_predictor(np.stack([r.data for r in reads]), np.stack([r.valid for r in reads]))
    assert isinstance(out.probs, np.ndarray)
    np.testing.assert_array_equal(out.probs, expected)
    assert out.batch == reads
    assert all(v is r.valid for v, r in zip(out.valid, reads, strict=True))
    assert 0 < out.seconds() < 60


def test_device_step_leaves_tensors_on_the_device(cpu_predictor: Predictor) -> None:
    step = model_step(cpu_predictor, on_device=True)
    assert type(step) is DeviceModelStep  # CUDA events only on CUDA
    reads = random_reads(cpu_predictor)
    out = step(reads)
    assert isinstance(out.probs, torch.Tensor) and out.probs.device.type == "cpu"
    expected = model_step(cpu_predictor, on_device=False)(reads).probs
    np.testing.assert_array_equal(out.probs.numpy(), expected)
    np.testing.assert_array_equal(out.valid.numpy(), np.stack([r.valid for r in reads]))
    assert 0 < out.seconds() < 60
