"""Model packages: round trip, integrity, no pickle, scene compatibility checks."""

from __future__ import annotations

import hashlib
import zipfile
from pathlib import Path

import pytest
import torch

from geoseg.errors import IncompatibleSceneError, ModelPackageError
from geoseg.models.package import (
    Architecture,
    BandSpec,
    ClassSpec,
    Normalization,
    PackageMetadata,
    SceneFacts,
    check_scene,
    load_package,
    looks_like_pickle,
    save_package,
)
from geoseg.models.registry import build_model

ARCH = Architecture(
    name="smp-unet",
    args={
        "in_channels": 4,
        "classes": 2,
        "encoder_name": "tu-mobilenetv3_small_100",
        "encoder_depth": 3,
        "decoder_channels": [16, 8, 8],
    },
)


def metadata(**changes) -> PackageMetadata:
    base = {
        "name": "tiny",
        "architecture": ARCH,
        "classes": [
            ClassSpec(id=0, name="water", color="#0000ff"),
            ClassSpec(id=3, name="land", color="#00ff00"),
        ],
        "bands": [BandSpec(name=n, index=i + 1) for i, n in enumerate("bgrn")],
        "normalization": Normalization(mean=[1.0] * 4, std=[2.0] * 4),
        "gsd_m": 10.0,
    }
    return PackageMetadata(**{**base, **changes})


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, torch.nn.Module]:
    torch.manual_seed(0)
    model = build_model(ARCH.name, ARCH.args).eval()
    path = save_package(tmp_path_factory.mktemp("pkg") / "tiny.geoseg", model, metadata())
    return path, model


def test_round_trip_rebuilds_the_same_network(tiny) -> None:
    path, model = tiny
    pkg = load_package(path)
    assert pkg.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert pkg.metadata.weights_sha256
    assert pkg.class_ids.tolist() == [0, 3]
    x = torch.randn(1, 4, 64, 64)
    with torch.inference_mode():
        torch.testing.assert_close(pkg.build()(x), model(x))
    assert not list(path.parent.glob(".*partial*"))


def test_a_folder_package_loads_too(tiny, tmp_path: Path) -> None:
    path, _ = tiny
    with zipfile.ZipFile(path) as zf:
        zf.extractall(tmp_path / "unzipped.geoseg")
    pkg = load_package(tmp_path / "unzipped.geoseg")
    assert pkg.metadata.name == "tiny"


def test_package_holds_no_pickle(tiny) -> None:
    path, _ = tiny
    with zipfile.ZipFile(path) as zf:
        assert sorted(zf.namelist()) == ["metadata.json", "weights.safetensors"]
        assert b"\x80\x04" not in zf.read("weights.safetensors")[:16]  # no pickle protocol header


@pytest.mark.parametrize(
    ("name", "head", "pickle"),
    [
        ("model.pkl", b"anything", True),
        ("weights.PT", b"", True),
        ("weights.safetensors", b"\x80\x04\x95" + bytes(13), True),  # pickle protocol 4
        ("weights.safetensors", b"PK\x03\x04" + bytes(12), True),  # torch.save zip
        # safetensors whose header length is 0x0280 = 640: starts like a pickle, is not one
        ("weights.safetensors", (640).to_bytes(8, "little") + b'{"__metadata', False),
        ("README.md", b"# a model\n", False),
    ],
)
def test_pickles_are_recognized_from_name_and_first_bytes(
    name: str, head: bytes, pickle: bool
) -> None:
    assert looks_like_pickle(name, head[:16]) is pickle


def test_a_folder_package_with_a_pickle_is_refused(tiny, tmp_path: Path) -> None:
    path, _ = tiny
    folder = tmp_path / "unzipped.geoseg"
    with zipfile.ZipFile(path) as zf:
        zf.extractall(folder)
    (folder / "checkpoint.pth").write_bytes(b"\x80\x02}q\x00.")
    with pytest.raises(ModelPackageError, match=r"checkpoint\.pth, a pickle"):
        load_package(folder)


def test_corrupt_weights_are_refused(tiny, tmp_path: Path) -> None:
    path, _ = tiny
    bad = tmp_path / "bad.geoseg"
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(bad, "w") as dst:
        dst.writestr("metadata.json", src.read("metadata.json"))
        weights = bytearray(src.read("weights.safetensors"))
        weights[-1] ^= 0xFF
        dst.writestr("weights.safetensors", bytes(weights))
    with pytest.raises(ModelPackageError, match="does not match the sha256"):
        load_package(bad)


@pytest.mark.parametrize(
    ("content", "message"),
    [(None, "not found"), (b"not a zip", "cannot read the model package")],
)
def test_unreadable_packages(tmp_path: Path, content: bytes | None, message: str) -> None:
    path = tmp_path / "x.geoseg"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(ModelPackageError, match=message):
        load_package(path)


def test_invalid_metadata_names_the_field(tiny, tmp_path: Path) -> None:
    path, _ = tiny
    bad = tmp_path / "bad.geoseg"
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(bad, "w") as dst:
        dst.writestr(
            "metadata.json", src.read("metadata.json").replace(b'"gsd_m": 10.0', b'"gsd_m": -1')
        )
        dst.writestr("weights.safetensors", src.read("weights.safetensors"))
    with pytest.raises(ModelPackageError, match="gsd_m"):
        load_package(bad)


def test_scene_checks(tiny) -> None:
    pkg = load_package(tiny[0])
    ok = SceneFacts(Path("s.tif"), 4, ("uint16",) * 4, 10.0)
    check_scene(pkg, ok)
    check_scene(pkg, SceneFacts(Path("s.tif"), 5, ("uint16",) * 5, 12.0))  # extra band, 20 % off
    with pytest.raises(IncompatibleSceneError, match="has 3 band"):
        check_scene(pkg, SceneFacts(Path("s.tif"), 3, ("uint16",) * 3, 10.0))
    with pytest.raises(IncompatibleSceneError, match="dtype uint8"):
        check_scene(pkg, SceneFacts(Path("s.tif"), 4, ("uint8",) * 4, 10.0))
    with pytest.raises(IncompatibleSceneError, match=r"ground sample distance 30\.00 m"):
        check_scene(pkg, SceneFacts(Path("s.tif"), 4, ("uint16",) * 4, 30.0))
