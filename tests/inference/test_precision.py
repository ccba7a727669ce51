"""Precision: which autocast dtype each ``--precision`` gives on each device."""

from __future__ import annotations

import pytest
import torch

from geoseg.errors import ConfigError
from geoseg.inference.precision import Precision, autocast_dtype, cpu_has_fast_bf16

CPU = torch.device("cpu")


def test_fp32_is_plain_arithmetic_everywhere() -> None:
    assert autocast_dtype(CPU, "fp32") is None
    assert autocast_dtype(torch.device("cuda"), Precision.FP32) is None


def test_cpu_bf16_on_request_and_by_default_for_training_with_amx() -> None:
    assert autocast_dtype(CPU, "bf16") == torch.bfloat16
    assert autocast_dtype(CPU, "bf16", training=True) == torch.bfloat16
    expected = torch.bfloat16 if cpu_has_fast_bf16() else None
    assert autocast_dtype(CPU, "auto", training=True) == expected
    assert autocast_dtype(CPU, "auto") is None  # maps stay fp32, the same on every CPU


def test_fp16_on_the_cpu_is_refused_in_one_line() -> None:
    with pytest.raises(ConfigError, match=r"--precision fp16 needs CUDA; on the CPU use bf16"):
        autocast_dtype(CPU, "fp16")


def test_unknown_precision_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"--precision 'int8': use auto, fp32, bf16 or fp16"):
        autocast_dtype(CPU, "int8")
