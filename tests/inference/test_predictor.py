"""Predictor: flips/rotations (TTA), ensembles, the CUDA-only batch size fill."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from geoseg.inference.predictor import Predictor
from geoseg.inference.scene import SceneWindow
from geoseg.models.package import load_package
from tests.support.inference import predict


def test_tta_and_ensembles(target: SceneWindow, demo_model: Path, tmp_path: Path) -> None:
    package = load_package(demo_model)
    plain = predict(target, Predictor(package, torch.device("cpu")), tmp_path / "p",
                    tile_px=128, overlap_px=16, batch_size=4)  # fmt: skip
    twice = Predictor([package, package], torch.device("cpu"))
    same = predict(target, twice, tmp_path / "e", tile_px=128, overlap_px=16, batch_size=4)
    assert (plain[0] != same[0]).sum() <= 2  # averaging a model with itself changes nothing
    tta = Predictor(package, torch.device("cpu"), tta=True)
    assert len(tta.transforms) == 8
    augmented = predict(target, tta, tmp_path / "t", tile_px=128, overlap_px=16, batch_size=4)
    np.testing.assert_array_equal(plain[0] == 255, augmented[0] == 255)
    valid = plain[0] != 255
    assert (plain[0] != augmented[0])[valid].mean() < 0.03  # TTA refines, it does not relabel


def test_cpu_prediction_is_fp32_unless_bf16_is_asked_for(
    target: SceneWindow, demo_model: Path, tmp_path: Path
) -> None:
    package = load_package(demo_model)
    cpu = torch.device("cpu")
    assert Predictor(package, cpu).autocast_dtype is None  # auto: the same map on every CPU
    fp32 = predict(target, Predictor(package, cpu, precision="fp32"), tmp_path / "a",
                   tile_px=128, overlap_px=16, batch_size=4)  # fmt: skip
    bf16 = predict(target, Predictor(package, cpu, precision="bf16"), tmp_path / "b",
                   tile_px=128, overlap_px=16, batch_size=4)  # fmt: skip
    np.testing.assert_array_equal(fp32[0] == 255, bf16[0] == 255)
    valid = fp32[0] != 255
    changed = (fp32[0] != bf16[0])[valid].mean()
    assert 0 < changed < 0.01  # bf16 arithmetic, not another model: a few close calls flip


def test_dihedral_transforms_invert() -> None:
    from geoseg.inference.predictor import DIHEDRAL_8

    x = torch.arange(2 * 3 * 4 * 4, dtype=torch.float32).reshape(2, 3, 4, 4)
    outputs = {tuple(t.forward(x).flatten().tolist()) for t in DIHEDRAL_8}
    assert len(outputs) == 8  # eight distinct flips/rotations
    for t in DIHEDRAL_8:
        torch.testing.assert_close(t.inverse(t.forward(x)), x)


def test_ensemble_with_other_classes_is_refused(demo_model: Path, tmp_path: Path) -> None:
    import zipfile

    from geoseg.errors import ModelPackageError

    other = tmp_path / "other.geoseg"
    with zipfile.ZipFile(demo_model) as src, zipfile.ZipFile(other, "w") as dst:
        dst.writestr("metadata.json", src.read("metadata.json").replace(b'"water"', b'"lake"'))
        dst.writestr("weights.safetensors", src.read("weights.safetensors"))
    with pytest.raises(ModelPackageError, match="classes differ"):
        Predictor([load_package(demo_model), load_package(other)], torch.device("cpu"))


def test_batch_size_is_only_auto_filled_on_cuda(demo_model: Path) -> None:
    predictor = Predictor(load_package(demo_model), torch.device("cpu"))
    assert predictor.fill_device_batch_size(256, 4) is None  # CPU: the package default stands


@pytest.mark.parametrize("dtype", [np.float32, np.uint16, np.int16])
def test_channels_last_normalize_is_normalize_bit_for_bit(dtype) -> None:
    from geoseg.inference.predictor import normalize, normalize_channels_last

    rng = np.random.default_rng(0)
    x = torch.from_numpy(rng.uniform(0, 5000, (3, 4, 33, 47)).astype(dtype))
    valid = torch.from_numpy(rng.random((3, 33, 47)) > 0.2)
    mean = torch.tensor([500.0, 610.0, 730.0, 820.0])[:, None, None]
    std = torch.tensor([301.0, 207.0, 113.0, 419.0])[:, None, None]
    expected = normalize(x.float(), valid, mean, std)
    got = normalize_channels_last(x, valid, mean, std)
    assert got.dtype == torch.float32 and got.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(got, expected) and torch.equal(got.signbit(), expected.signbit())
