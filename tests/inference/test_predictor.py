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
