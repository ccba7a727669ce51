"""Model packages (``*.geoseg``): weights as safetensors plus self-describing JSON metadata.

A package is a zip file (or a folder) holding ``metadata.json`` and ``weights.safetensors``.
The metadata says everything needed to use the weights on a scene: architecture name and
arguments, classes with colours, input bands and dtype, normalization, ground sample distance,
tile defaults, the training data summary and validation metrics. Loading never unpickles, and
checks the weights against the sha256 recorded at save time.
"""

from __future__ import annotations

import hashlib
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from pydantic import BaseModel, Field, ValidationError
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors
from torch import nn

from geoseg.classes import ClassInfo, validate_classes
from geoseg.errors import IncompatibleSceneError, ModelPackageError, option
from geoseg.io.staging import written_atomically
from geoseg.models.registry import build_model

METADATA_NAME = "metadata.json"
WEIGHTS_NAME = "weights.safetensors"
PACKAGE_SUFFIX = ".geoseg"


class ClassSpec(BaseModel):
    id: int = Field(ge=0, le=254)
    name: str
    color: str = Field(pattern=r"^#[0-9a-fA-F]{6}$")


class BandSpec(BaseModel):
    name: str
    index: int = Field(ge=1, description="1-based band index in the scene")


class Normalization(BaseModel):
    """Per-band ``(x - mean) / std`` applied to raw scene values, computed on training data."""

    mean: list[float]
    std: list[float]


DISPLAY_VALUES = "8-bit display value"
"""`InputRadiometry.quantity` of RGB/aerial models trained on plain 0-255 values."""


class InputRadiometry(BaseModel):
    """What the model's input values mean: physical value = stored × scale + offset.

    E.g. surface reflectance stored as reflectance × 10000: scale 1e-4, offset 0. Scenes that
    declare other units (STAC raster:bands, Sentinel-2 baseline offsets, Landsat C2 scale) are
    converted into these before normalization.
    """

    quantity: str = "surface reflectance"
    scale: float = Field(gt=0)
    offset: float = 0.0

    @property
    def display(self) -> bool:
        """8-bit display values (aerial RGB): no physical unit a scene could declare."""
        return self.quantity == DISPLAY_VALUES


class TileDefaults(BaseModel):
    size_px: int = Field(256, ge=16)
    overlap_px: int = Field(32, ge=0)
    batch_size: int = Field(8, ge=1)


class Architecture(BaseModel):
    name: str
    args: dict[str, Any]


class PackageMetadata(BaseModel):
    """Everything a package says about its model, validated on load."""

    format: Literal["geoseg-model"] = "geoseg-model"
    format_version: Literal[1] = 1
    name: str
    description: str = ""
    created: str = Field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))
    geoseg_version: str = ""
    architecture: Architecture
    classes: list[ClassSpec]
    bands: list[BandSpec]
    dtype: str = "uint16"
    normalization: Normalization
    radiometry: InputRadiometry | None = Field(
        None, description="what the input values mean; None: unknown (values used as stored)"
    )
    gsd_m: float = Field(gt=0)
    gsd_tolerance: float = Field(
        0.5, ge=0, description="accepted relative difference between scene and package GSD"
    )
    tile: TileDefaults = TileDefaults()
    training: dict[str, Any] = {}
    metrics: dict[str, Any] = {}
    weights_sha256: str = ""

    def class_infos(self) -> tuple[ClassInfo, ...]:
        return validate_classes([ClassInfo(c.id, c.name, c.color) for c in self.classes])

    @property
    def band_indexes(self) -> list[int]:
        return [b.index for b in self.bands]


@dataclass(frozen=True)
class ModelPackage:
    """A loaded package: metadata, tensors, and the sha256 a user can check with sha256sum."""

    path: Path
    metadata: PackageMetadata
    state_dict: dict[str, torch.Tensor]
    sha256: str

    def build(self) -> nn.Module:
        """Rebuild the network from the stored architecture and load the weights (eval mode)."""
        model = build_model(self.metadata.architecture.name, self.metadata.architecture.args)
        try:
            model.load_state_dict(self.state_dict)
        except RuntimeError as exc:
            raise ModelPackageError(
                f"{self.path}: the weights do not fit the architecture "
                f"{self.metadata.architecture.name!r} ({str(exc).splitlines()[0]}); "
                "the package is corrupt or was written by an incompatible geoseg"
            ) from exc
        return model.eval()

    @property
    def class_ids(self) -> np.ndarray:
        """Class raster value for each model output channel."""
        return np.array([c.id for c in self.metadata.classes], dtype=np.uint8)


def save_package(path: Path, model: nn.Module, metadata: PackageMetadata) -> Path:
    """Write a zip package atomically (temp name, then rename) and return its path."""
    path = Path(path)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    weights = save_safetensors(state)
    meta = metadata.model_copy(update={"weights_sha256": hashlib.sha256(weights).hexdigest()})
    if not meta.geoseg_version:
        from geoseg import __version__

        meta = meta.model_copy(update={"geoseg_version": __version__})
    with (
        written_atomically(path) as tmp,
        zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as zf,
    ):
        zf.writestr(METADATA_NAME, meta.model_dump_json(indent=2))
        zf.writestr(WEIGHTS_NAME, weights)
    return path


def load_package(path: Path | str) -> ModelPackage:
    """Read and validate a package (zip or folder); never unpickles anything."""
    path = Path(path)
    meta_bytes, weights = _read_members(path)
    try:
        metadata = PackageMetadata.model_validate_json(meta_bytes)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise ModelPackageError(
            f"{path}: metadata.json is invalid at {where!r}: {first['msg']}; "
            "re-export the package with `geoseg train`"
        ) from None
    digest = hashlib.sha256(weights).hexdigest()
    if metadata.weights_sha256 and digest != metadata.weights_sha256:
        raise ModelPackageError(
            f"{path}: weights.safetensors does not match the sha256 in metadata.json "
            "(the file is corrupt or was edited); get a fresh copy of the package"
        )
    _check_metadata(path, metadata)
    try:
        state = load_safetensors(weights)
    except Exception as exc:
        raise ModelPackageError(f"{path}: cannot read weights.safetensors ({exc})") from exc
    return ModelPackage(path, metadata, state, _package_sha256(path, meta_bytes, weights))


def _read_members(path: Path) -> tuple[bytes, bytes]:
    """The raw metadata and weights of a zip or folder package, refusing pickles unread."""
    try:
        if path.is_dir():
            names = sorted(p.name for p in path.iterdir() if p.is_file())
            _refuse_pickles(path, names, lambda name: _file_head(path / name))
            meta = _member(path, names, METADATA_NAME, (path / METADATA_NAME).read_bytes)
            return meta, _member(path, names, WEIGHTS_NAME, (path / WEIGHTS_NAME).read_bytes)
        with zipfile.ZipFile(path) as zf:
            names = zf.namelist()
            _refuse_pickles(path, names, lambda name: _zip_head(zf, name))
            meta = _member(path, names, METADATA_NAME, lambda: zf.read(METADATA_NAME))
            return meta, _member(path, names, WEIGHTS_NAME, lambda: zf.read(WEIGHTS_NAME))
    except FileNotFoundError:
        raise ModelPackageError(
            f"{path}: model package not found; pass an existing .geoseg file with {option('model')}"
        ) from None
    except (zipfile.BadZipFile, OSError) as exc:
        raise ModelPackageError(
            f"{path}: cannot read the model package ({exc}); "
            "pass a .geoseg file written by `geoseg train`"
        ) from None


def _member(path: Path, names: list[str], name: str, read: Callable[[], bytes]) -> bytes:
    if name not in names:
        listed = ", ".join(names) or "nothing"
        raise ModelPackageError(
            f"{path}: not a complete geoseg model package: {name} is missing (it holds "
            f"{listed}); use a package written by `geoseg train`"
        )
    return read()


_PICKLE_SUFFIXES = (".pkl", ".pickle", ".pt", ".pth", ".ckpt", ".bin", ".joblib", ".npy")


def _file_head(path: Path) -> bytes:
    with path.open("rb") as f:
        return f.read(16)


def _zip_head(zf: zipfile.ZipFile, name: str) -> bytes:
    with zf.open(name) as f:
        return f.read(16)


def looks_like_pickle(name: str, head: bytes) -> bool:
    """Whether a member is a pickle, judged by its name and first 16 bytes only.

    Pickle suffixes, pickle protocol 2-5 (``0x80 0x02..0x05``) or a ``torch.save`` zip count;
    safetensors (an 8-byte header length, then ``{``) never does, whatever its length bytes.
    """
    if name.lower().endswith(_PICKLE_SUFFIXES):
        return True
    if head[8:9] == b"{":
        return False
    protocol = len(head) >= 2 and head[0] == 0x80 and 2 <= head[1] <= 5
    return protocol or head.startswith(b"PK\x03\x04")


def _refuse_pickles(path: Path, names: list[str], head: Callable[[str], bytes]) -> None:
    """Refuse a package holding a pickle, looking only at names and first bytes.

    Unpickling runs arbitrary code, so a package with a pickle is refused before anything in
    it is loaded, even if safetensors weights are present as well.
    """
    for name in names:
        if name == METADATA_NAME or name.endswith("/"):
            continue
        if looks_like_pickle(name, head(name)):
            raise ModelPackageError(
                f"{path}: holds {name}, a pickle or PyTorch checkpoint; geoseg never loads "
                "pickles because unpickling can run any code: export the weights as "
                "safetensors (a package written by `geoseg train`)"
            )


def _check_metadata(path: Path, meta: PackageMetadata) -> None:
    n_bands = len(meta.bands)
    if len(meta.normalization.mean) != n_bands or len(meta.normalization.std) != n_bands:
        raise ModelPackageError(
            f"{path}: normalization has {len(meta.normalization.mean)} means / "
            f"{len(meta.normalization.std)} stds for {n_bands} bands"
        )
    if any(s <= 0 for s in meta.normalization.std):
        raise ModelPackageError(f"{path}: normalization std values must be > 0")
    try:
        meta.class_infos()
    except Exception as exc:
        raise ModelPackageError(f"{path}: invalid class list: {exc}") from None


def _package_sha256(path: Path, meta_bytes: bytes, weights: bytes) -> str:
    """sha256 of the package file (as sha256sum prints it); for a folder, of its two members."""
    if path.is_file():
        h = hashlib.sha256()
        with path.open("rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
        return h.hexdigest()
    return hashlib.sha256(meta_bytes + weights).hexdigest()


@dataclass(frozen=True)
class SceneFacts:
    """What a package needs to know about a scene to accept it."""

    path: Path | str
    band_count: int
    dtypes: tuple[str, ...]
    gsd_m: float
    converted: bool = False
    """The values are converted into the model's units, so their stored dtype may differ."""


def check_scene(package: ModelPackage, scene: SceneFacts) -> None:
    """Refuse a scene whose bands, dtype or ground sample distance do not fit the package."""
    meta = package.metadata
    needed = max(meta.band_indexes)
    if scene.band_count < needed:
        names = ", ".join(b.name for b in meta.bands)
        raise IncompatibleSceneError(
            f"{scene.path}: has {scene.band_count} band(s) but the model "
            f"{package.path.name} needs {needed} ({names}); use a scene with those bands"
        )
    used = {scene.dtypes[i - 1] for i in meta.band_indexes}
    if used != {meta.dtype} and not scene.converted:
        raise IncompatibleSceneError(
            f"{scene.path}: band dtype {', '.join(sorted(used))} but the model "
            f"{package.path.name} was trained on {meta.dtype}; convert the scene to {meta.dtype}"
        )
    ratio = scene.gsd_m / meta.gsd_m
    if abs(ratio - 1.0) > meta.gsd_tolerance:
        raise IncompatibleSceneError(
            f"{scene.path}: ground sample distance {scene.gsd_m:.2f} m is too far from the "
            f"model's {meta.gsd_m:.2f} m (tolerance {meta.gsd_tolerance:.0%}); "
            "resample the scene (e.g. gdalwarp -tr) or use a model trained at this resolution"
        )


def package_summary(package: ModelPackage) -> dict[str, Any]:
    """A JSON-friendly summary for `geoseg model info` and run.json."""
    meta = package.metadata
    return {
        "path": str(package.path),
        "sha256": package.sha256,
        "name": meta.name,
        "architecture": meta.architecture.model_dump(),
        "classes": [c.model_dump() for c in meta.classes],
        "bands": [b.model_dump() for b in meta.bands],
        "dtype": meta.dtype,
        "normalization": meta.normalization.model_dump(),
        "radiometry": None if meta.radiometry is None else meta.radiometry.model_dump(),
        "gsd_m": meta.gsd_m,
        "tile": meta.tile.model_dump(),
        "training": meta.training,
        "metrics": meta.metrics,
        "created": meta.created,
    }
