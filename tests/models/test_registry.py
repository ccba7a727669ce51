"""The model registry: every name once, clear errors, packages rebuild our networks."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from geoseg.errors import ConfigError
from geoseg.models.package import (
    Architecture,
    BandSpec,
    ClassSpec,
    Normalization,
    PackageMetadata,
    load_package,
    save_package,
)
from geoseg.models.registry import MODELS, build_model


def test_registry_lists_each_model_once_and_names_valid_ones() -> None:
    for name in ("fcn8s", "fcn16s", "fcn32s", "unet", "smp-unet", "smp-deeplabv3plus"):
        assert name in MODELS
    with pytest.raises(ConfigError) as err:
        build_model("fcn4s", {"in_channels": 4, "classes": 2})
    assert "fcn8s" in str(err.value) and "unet" in str(err.value)
    with pytest.raises(ConfigError, match="cannot build unet"):
        build_model("unet", {"in_channels": 4, "classes": 2, "depth": 9})


@pytest.mark.parametrize(
    ("name", "args"),
    [
        ("fcn8s", {"width": 1 / 16}),
        ("unet", {"width": 1 / 16}),
        ("fcn16s", {"width": 1 / 16}),
        ("pointwise", {}),
    ],
)
def test_packages_rebuild_our_models(tmp_path: Path, name: str, args: dict) -> None:
    arch = Architecture(name=name, args={"in_channels": 4, "classes": 2, **args})
    model = build_model(arch.name, arch.args).eval()
    meta = PackageMetadata(
        name="tiny",
        architecture=arch,
        classes=[
            ClassSpec(id=0, name="a", color="#000000"),
            ClassSpec(id=1, name="b", color="#ffffff"),
        ],
        bands=[BandSpec(name=f"b{i}", index=i) for i in range(1, 5)],
        normalization=Normalization(mean=[0.0] * 4, std=[1.0] * 4),
        gsd_m=10.0,
    )
    path = save_package(tmp_path / "m.geoseg", model, meta)
    rebuilt = load_package(path).build()
    x = torch.randn(1, 4, 45, 71)
    with torch.inference_mode():
        assert torch.allclose(model(x), rebuilt(x))


def test_pointwise_is_a_per_pixel_linear_map() -> None:
    from geoseg.models.registry import required_multiple

    model = build_model("pointwise", {"in_channels": 4, "classes": 3}).eval()
    x = torch.randn(2, 4, 7, 5)
    with torch.inference_mode():
        y = model(x)
        pixel = model(x[:, :, 3:4, 2:3])  # one pixel alone: no spatial context at all
    assert y.shape == (2, 3, 7, 5) and required_multiple(model) == 1
    assert torch.allclose(y[:, :, 3:4, 2:3], pixel)
