"""`--encoder-weights` and `--init-weights`: tensors from safetensors, packages or weights-only
checkpoints, mapped onto the encoder or the whole model."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from geoseg.errors import ConfigError
from geoseg.models.registry import build_model
from geoseg.models.start_weights import load_encoder_weights, load_model_weights


def smp(seed: int, in_channels: int = 3, encoder: str = "resnet18") -> torch.nn.Module:
    torch.manual_seed(seed)
    return build_model(
        "smp-unet", {"in_channels": in_channels, "classes": 2, "encoder_name": encoder}
    )


def same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor], prefix: str) -> bool:
    keys = [k for k in a if k.startswith(prefix)]
    return bool(keys) and all(torch.equal(a[k], b[k]) for k in keys)


@pytest.fixture(scope="module")
def source() -> torch.nn.Module:
    return smp(1)


def test_a_whole_model_file_loads_its_encoder_only(source, tmp_path: Path) -> None:
    file = tmp_path / "model.safetensors"
    save_file({k: v.contiguous() for k, v in source.state_dict().items()}, str(file))
    target = smp(2)
    before = {k: v.clone() for k, v in target.state_dict().items()}
    loaded = load_encoder_weights(target, file)
    after = target.state_dict()
    assert same(after, source.state_dict(), "encoder.")
    assert same(after, before, "decoder.")  # the decoder keeps its own initialization
    assert not same(after, source.state_dict(), "decoder.")
    assert loaded.loaded == sum(k.startswith("encoder.") for k in after)
    assert loaded.ignored == len(after) - loaded.loaded
    assert len(loaded.sha256) == 64


def test_an_encoder_alone_in_a_wrapped_checkpoint_loads(source, tmp_path: Path) -> None:
    """A plain ResNet state_dict (keys conv1.weight, layer1...) under state_dict/module."""
    file = tmp_path / "resnet18.pth"
    state = {f"module.{k}": v for k, v in source.encoder.state_dict().items()}
    torch.save({"epoch": 3, "state_dict": state}, file)
    target = smp(2)
    loaded = load_encoder_weights(target, file)
    assert loaded.mapping.startswith("encoder alone")
    assert same(target.state_dict(), source.state_dict(), "encoder.")


def test_weights_from_a_geoseg_package_load_into_a_unet(tmp_path: Path) -> None:
    """geoseg's own U-Net: its encoder is inc + down; a package is a valid source."""
    from geoseg.models.package import Architecture, PackageMetadata, save_package

    args = {"in_channels": 3, "classes": 2, "width": 0.125}
    torch.manual_seed(1)
    first = build_model("unet", args)
    meta = PackageMetadata(
        name="t", architecture=Architecture(name="unet", args=args),
        classes=[{"id": i, "name": n, "color": "#808080"} for i, n in ((1, "a"), (2, "b"))],
        bands=[{"name": n, "index": i} for i, n in enumerate(("red", "green", "blue"), 1)],
        dtype="uint8", normalization={"mean": [0, 0, 0], "std": [1, 1, 1]}, gsd_m=0.25,
    )  # fmt: skip
    package = save_package(tmp_path / "m.geoseg", first, meta)
    torch.manual_seed(2)
    second = build_model("unet", args)
    loaded = load_encoder_weights(second, package)
    assert same(second.state_dict(), first.state_dict(), "down.")
    assert same(second.state_dict(), first.state_dict(), "inc.")
    assert not same(second.state_dict(), first.state_dict(), "up.")
    assert loaded.ignored > 0


def test_other_bands_are_refused_with_the_key_and_both_shapes(source, tmp_path: Path) -> None:
    file = tmp_path / "rgb.safetensors"
    save_file({k: v.contiguous() for k, v in source.state_dict().items()}, str(file))
    with pytest.raises(ConfigError) as caught:
        load_encoder_weights(smp(2, in_channels=4), file)
    message = str(caught.value)
    assert "\n" not in message
    assert "encoder.conv1.weight: file (64, 3, 7, 7) vs model (64, 4, 7, 7)" in message
    assert str(file) in message


def test_another_encoder_is_refused_naming_missing_keys(source, tmp_path: Path) -> None:
    file = tmp_path / "r18.safetensors"
    save_file({k: v.contiguous() for k, v in source.state_dict().items()}, str(file))
    with pytest.raises(ConfigError, match=r"(have another shape|are not in the file)"):
        load_encoder_weights(smp(2, encoder="resnet34"), file)


class Payload:
    """Would run code if unpickled fully."""

    def __reduce__(self):
        return (Path("/tmp/geoseg-pwned").touch, ())


def test_a_pickle_with_code_is_never_unpickled(tmp_path: Path) -> None:
    file = tmp_path / "evil.pt"
    torch.save({"state_dict": Payload()}, file)
    marker = Path("/tmp/geoseg-pwned")
    marker.unlink(missing_ok=True)
    with pytest.raises(ConfigError, match="never unpickles code"):
        load_encoder_weights(smp(2), file)
    assert not marker.exists()


def test_a_missing_file_names_the_option(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="--encoder-weights"):
        load_encoder_weights(smp(2), tmp_path / "absent.safetensors")


def test_init_weights_load_the_whole_model(source, tmp_path: Path) -> None:
    """Fine-tuning: encoder, decoder and head all come from the file (here with wrappers)."""
    file = tmp_path / "model.pt"
    torch.save({"model": {f"module.{k}": v for k, v in source.state_dict().items()}}, file)
    target = smp(2)
    loaded = load_model_weights(target, file)
    after, wanted = target.state_dict(), source.state_dict()
    assert all(torch.equal(after[k], wanted[k]) for k in wanted)
    assert (loaded.loaded, loaded.ignored) == (len(wanted), 0)
    assert loaded.mapping == "wrappers stripped"


def test_init_weights_of_other_classes_are_refused_pointing_to_the_encoder(
    source, tmp_path: Path
) -> None:
    file = tmp_path / "two-classes.safetensors"
    save_file({k: v.contiguous() for k, v in source.state_dict().items()}, str(file))
    torch.manual_seed(3)
    five = build_model("smp-unet", {"in_channels": 3, "classes": 5, "encoder_name": "resnet18"})
    with pytest.raises(ConfigError) as caught:
        load_model_weights(five, file)
    message = str(caught.value)
    assert "\n" not in message and str(file) in message
    assert "segmentation_head.0.weight: file (2, 16, 3, 3) vs model (5, 16, 3, 3)" in message
    assert "--encoder-weights" in message


def test_init_weights_missing_the_decoder_are_refused(source, tmp_path: Path) -> None:
    file = tmp_path / "encoder.safetensors"
    state = {k: v.contiguous() for k, v in source.state_dict().items() if "encoder" in k}
    save_file(state, str(file))
    with pytest.raises(ConfigError, match=r"model tensors are not in the file \(e\.g\. decoder"):
        load_model_weights(smp(2), file)
    with pytest.raises(ConfigError, match="--init-weights"):
        load_model_weights(smp(2), tmp_path / "absent.geoseg")
