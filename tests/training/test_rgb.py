"""RGB uint8 (aerial) training: display-value radiometry in the package, encoder weights."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from geoseg.errors import ConfigError
from geoseg.models.package import DISPLAY_VALUES, load_package
from geoseg.sources.radiometry import Radiometry, unknown_units_warning
from geoseg.sources.resolve import model_radiometry
from geoseg.training.loop import train
from geoseg.training.settings import load_train_settings
from tests.support.training import TINY, write_raster


def rgb_pair(tmp_path: Path) -> tuple[Path, Path]:
    """A 128 px 3-band uint8 image with bright square 'roofs' labelled 2 on background 1."""
    rng = np.random.default_rng(0)
    labels = np.ones((128, 128), dtype=np.uint8)
    for r, c in rng.integers(0, 112, (12, 2)):
        labels[r : r + 14, c : c + 14] = 2
    image = rng.integers(20, 90, (3, 128, 128)).astype(np.uint8)
    image[:, labels == 2] += 120
    return write_raster(tmp_path / "rgb.tif", image), write_raster(tmp_path / "lab.tif", labels)


def settings(image: Path, labels: Path, out: Path, **changes):
    values = {
        **TINY, "image": [image], "labels": [labels], "out": out, "epochs": 1, "steps_per_epoch": 2,
        "band_names": ["red", "green", "blue"], "val_block": 32,
        "classes": [{"id": 1, "name": "Background"}, {"id": 2, "name": "Building"}],
        **changes,
    }  # fmt: skip
    return load_train_settings(None, values)


def test_uint8_rgb_packages_record_display_values_and_run_unwarned(tmp_path: Path) -> None:
    torch.set_num_threads(1)
    image, labels = rgb_pair(tmp_path)
    package = load_package(train(settings(image, labels, tmp_path / "a.geoseg")).package)
    meta = package.metadata
    assert meta.radiometry is not None and meta.radiometry.quantity == DISPLAY_VALUES
    assert (meta.radiometry.scale, meta.radiometry.offset) == (1.0, 0.0)
    assert [b.name for b in meta.bands] == ["red", "green", "blue"]
    assert meta.dtype == "uint8"
    model = model_radiometry(package)
    assert model is not None and model.display
    assert unknown_units_warning("scene.tif", [None, None, None], model) is None
    # a scene that does declare other units is still converted / warned about
    other = Radiometry(0.5, 0.0, "GeoTIFF scale/offset")
    assert unknown_units_warning("scene.tif", [other, None, None], model) is not None
    unknown = load_package(
        train(settings(image, labels, tmp_path / "b.geoseg", radiometry="none")).package
    )
    assert unknown.metadata.radiometry is None


def test_training_starts_from_encoder_weights_of_an_earlier_package(tmp_path: Path) -> None:
    torch.set_num_threads(1)
    image, labels = rgb_pair(tmp_path)
    first = train(settings(image, labels, tmp_path / "a.geoseg")).package
    second = load_package(
        train(settings(image, labels, tmp_path / "b.geoseg", encoder_weights=first)).package
    )
    record = second.metadata.training["encoder_weights"]
    assert record["file"] == str(first)
    assert record["tensors_loaded"] > 0 and record["file_keys_ignored"] > 0
    assert second.metadata.training["settings"]["encoder_weights"] == str(first)


def test_fine_tuning_starts_from_every_weight_of_an_earlier_package(tmp_path: Path) -> None:
    """--init-weights: with a vanishing learning rate the convolutions stay the package's
    (encoder and decoder alike); both start options at once are refused in one line."""
    torch.set_num_threads(1)
    image, labels = rgb_pair(tmp_path)
    first = train(settings(image, labels, tmp_path / "a.geoseg")).package
    tuned = load_package(
        train(
            settings(image, labels, tmp_path / "b.geoseg", init_weights=first, lr=1e-12, seed=7)
        ).package
    )
    source = load_package(first).state_dict
    convs = [k for k, v in source.items() if v.ndim == 4]
    assert any(k.startswith("up.") for k in convs)  # the decoder of geoseg's U-Net
    assert all(torch.allclose(tuned.state_dict[k], source[k], atol=1e-6) for k in convs)
    record = tuned.metadata.training["init_weights"]
    assert record["file"] == str(first)
    assert (record["tensors_loaded"], record["file_keys_ignored"]) == (len(source), 0)
    both = settings(image, labels, tmp_path / "c.geoseg", init_weights=first, encoder_weights=first)
    with pytest.raises(ConfigError, match="both given") as caught:
        train(both)
    assert "\n" not in str(caught.value)
    assert not (tmp_path / "c.geoseg").exists()
