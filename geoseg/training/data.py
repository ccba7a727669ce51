"""Training data: image GeoTIFFs with label rasters or label polygons, as checked tiles.

Labels come as a raster on the image grid or as polygons (GeoPackage/GeoJSON/... with a class
column) rasterized on the fly per tile. A `LabelConfig` maps label values to classes and says
which values are nodata, so nothing about a data set is hard-coded. Tiles hold class *indices*
(positions in the class list) and `IGNORE` (255) where there is no label.

Each scene may be restricted to a pixel window (its region, e.g. the western 60 % of columns).
The region is cut into square blocks and a seeded share of the blocks is held out for
validation: a spatial split, so validation pixels are never neighbours of training pixels in
the same block. Training reads never see validation labels (they are set to `IGNORE`), though a
training tile may show validation image pixels as context at its border. Normalization
statistics and class counts are streamed block by block over the training blocks only.

Training tiles are drawn at random positions, on a shuffled grid, or class-balanced (tiles
holding rare classes drawn more often), and get a joint augmentation (the 8 flips/rotations,
small scale jitter, per-band brightness/contrast); validation tiles are read as they are.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pyogrio
import pyogrio.errors
import rasterio
import shapely
import torch
import torch.nn.functional as F
from pyproj import Transformer
from rasterio.crs import CRS
from rasterio.errors import RasterioIOError
from rasterio.features import rasterize

from geoseg.classes import CLASS_NODATA, ClassInfo
from geoseg.errors import ConfigError, TrainingDataError
from geoseg.geo.grid import BlockGrid, stride_starts
from geoseg.geo.window import PixelWindow, format_window, parse_window
from geoseg.io.raster import SceneInfo, open_scene, read_window
from geoseg.models.package import Normalization

IGNORE = CLASS_NODATA
"""Class index of pixels without a label (nodata, unlabelled, or held out)."""

POLYGON_SUFFIXES = frozenset({".gpkg", ".geojson", ".json", ".shp", ".fgb", ".gml", ".kml"})
"""Label files with these suffixes are read as polygons; anything else as a raster."""


# ---------------------------------------------------------------------------------------------
# Label values -> classes.


@dataclass(frozen=True)
class LabelConfig:
    """How label values become classes.

    ``value_map`` maps a label value (raster value, or the polygon class column's value) to a
    class id; by default every class id maps to itself. ``nodata`` values carry no label.
    Polygon class columns may also hold class names.
    """

    classes: tuple[ClassInfo, ...]
    value_map: Mapping[int, int] = field(default_factory=dict)
    nodata: frozenset[int] = frozenset({CLASS_NODATA})
    class_column: str = "class"

    def __post_init__(self) -> None:
        ids = {c.id for c in self.classes}
        bad = sorted({v for v in self.value_map.values() if v not in ids})
        if bad:
            raise ConfigError(
                f"label_map points to class ids {bad} that are not in the class list "
                f"{sorted(ids)}; fix label_map or add those classes"
            )

    @property
    def values_to_index(self) -> dict[int, int]:
        """Label value -> class index (position in the class list)."""
        index = {c.id: i for i, c in enumerate(self.classes)}
        mapping = self.value_map or {c.id: c.id for c in self.classes}
        return {int(v): index[cid] for v, cid in mapping.items() if int(v) not in self.nodata}

    def to_json(self) -> dict[str, Any]:
        """The parts stored in a model package, so `geoseg evaluate` reads labels the same way."""
        return {
            "label_map": {str(k): v for k, v in self.value_map.items()},
            "label_nodata": sorted(self.nodata),
            "class_column": self.class_column,
        }


class LabelReader(Protocol):
    """Class-index tiles (``IGNORE`` where unlabelled) from a label raster or polygons."""

    path: Path

    def read(self, window: PixelWindow) -> np.ndarray: ...

    def close(self) -> None: ...


class RasterLabels:
    """A label raster on the image grid, mapped to class indices through a lookup table."""

    def __init__(self, path: Path, config: LabelConfig, image: SceneInfo):
        self.path = path
        try:
            self._ds = rasterio.open(path)
        except RasterioIOError as exc:
            raise TrainingDataError(
                f"{path}: cannot read the label raster ({str(exc).split(':')[-1].strip()}); "
                "pass a GeoTIFF on the image grid or polygons (.gpkg/.geojson)"
            ) from None
        ds, grid = self._ds, image.grid
        if (ds.crs, ds.transform, (ds.height, ds.width)) != (
            image.grid.crs,
            image.grid.transform,
            image.grid.shape,
        ):
            ds.close()
            raise TrainingDataError(
                f"{path}: the label grid ({ds.crs}, {ds.width}x{ds.height} px, origin "
                f"{ds.transform.c:g},{ds.transform.f:g}, pixel {ds.transform.a:g} m) differs from "
                f"the image {image.path} ({grid.crs}, {grid.width}x{grid.height} px, origin "
                f"{grid.transform.c:g},{grid.transform.f:g}, pixel {grid.transform.a:g} m); "
                "resample the labels onto the image grid (gdalwarp -r near -te ... -tr ...)"
            )
        mapping = config.values_to_index
        self._known = sorted(mapping)
        self._classes = config.classes
        self._nodata = set(config.nodata)
        if ds.nodata is not None and float(ds.nodata).is_integer():
            self._nodata.add(int(ds.nodata))
        self._lut: np.ndarray | None = None
        dtype = np.dtype(ds.dtypes[0])
        if dtype.kind == "u" and dtype.itemsize <= 2:
            lut = np.full(2 ** (8 * dtype.itemsize), -1, dtype=np.int16)
            for v in self._nodata:
                if 0 <= v < lut.size:
                    lut[v] = IGNORE
            for v, i in mapping.items():
                if 0 <= v < lut.size:
                    lut[v] = i
            self._lut = lut
        self._keys = np.array(sorted(mapping), dtype=np.float64)
        self._values = np.array([mapping[k] for k in sorted(mapping)], dtype=np.int16)

    def read(self, window: PixelWindow) -> np.ndarray:
        raw = self._ds.read(1, window=window.to_rasterio())
        out = self._lut[raw] if self._lut is not None else self._map_generic(raw)
        if (out < 0).any():
            unknown = sorted({v.item() for v in np.unique(raw[out < 0])})[:10]
            names = ", ".join(f"{c.id} {c.name}" for c in self._classes)
            raise TrainingDataError(
                f"{self.path}: label values {unknown} are not in the class list ({names}) "
                f"and not nodata {sorted(self._nodata)}; add them to the classes or label_map "
                "of the training config, or list them in label_nodata"
            )
        return out.astype(np.uint8)

    def _map_generic(self, raw: np.ndarray) -> np.ndarray:
        flat = raw.astype(np.float64)
        out = np.full(raw.shape, -1, dtype=np.int16)
        is_nodata = np.isin(flat, list(self._nodata)) | np.isnan(flat)
        out[is_nodata] = IGNORE
        if self._keys.size:
            idx = np.clip(np.searchsorted(self._keys, flat), 0, self._keys.size - 1)
            found = (self._keys[idx] == flat) & ~is_nodata
            out[found] = self._values[idx[found]]
        return out

    def close(self) -> None:
        self._ds.close()


class PolygonLabels:
    """Label polygons rasterized per tile onto the image grid (later features win overlaps)."""

    def __init__(self, path: Path, config: LabelConfig, image: SceneInfo):
        self.path = path
        self._transform = image.grid.transform
        column = config.class_column
        try:
            info = pyogrio.read_info(path)
            fields = [str(f) for f in info["fields"]]
            if column not in fields:
                raise TrainingDataError(
                    f"{path}: has no class column {column!r} "
                    f"(columns: {', '.join(fields) or 'none'}); "
                    "set class_column in the training config (--class-column)"
                )
            meta, _, wkb, values = pyogrio.raw.read(path, columns=[column], read_geometry=True)
        except (pyogrio.errors.DataSourceError, pyogrio.errors.DataLayerError, OSError) as exc:
            raise TrainingDataError(
                f"{path}: cannot read the label polygons ({str(exc).splitlines()[0]}); "
                "pass a GeoPackage/GeoJSON with polygons and a class column"
            ) from None
        if not meta.get("crs"):
            raise TrainingDataError(f"{path}: the label polygons have no CRS; save them with one")
        geoms = shapely.from_wkb(wkb)
        crs = CRS.from_user_input(meta["crs"])
        if crs != image.grid.crs:
            transformer = Transformer.from_crs(
                crs.to_wkt(), image.grid.crs.to_wkt(), always_xy=True
            )
            geoms = shapely.transform(
                geoms, lambda xy: np.column_stack(transformer.transform(*xy.T))
            )
        classes = _polygon_classes(path, values[0], config)
        keep = np.array([g is not None and not g.is_empty for g in geoms]) & (classes >= 0)
        self._geoms = geoms[keep]
        self._classes = classes[keep].astype(np.uint8)
        if not len(self._geoms):
            raise TrainingDataError(f"{path}: no labelled polygon to train on")
        footprint = shapely.box(*image.grid.bounds)
        if not shapely.intersects(self._geoms, footprint).any():
            raise TrainingDataError(
                f"{path}: no label polygon overlaps the image {image.path} (after reprojecting "
                f"to {image.grid.crs.to_string()}); check the files belong together"
            )
        self._tree = shapely.STRtree(self._geoms)

    def read(self, window: PixelWindow) -> np.ndarray:
        transform = self._transform @ rasterio.Affine.translation(window.col_off, window.row_off)
        x0, y0 = transform @ (0, 0)
        x1, y1 = transform @ (window.width, window.height)
        hits = np.sort(self._tree.query(shapely.box(x0, y1, x1, y0)))
        if hits.size == 0:
            return np.full(window.shape, IGNORE, dtype=np.uint8)
        shapes = zip(self._geoms[hits], self._classes[hits].tolist(), strict=True)
        return rasterize(
            shapes, out_shape=window.shape, transform=transform, fill=IGNORE, dtype="uint8"
        )

    def close(self) -> None:
        pass


def _polygon_classes(path: Path, values: np.ndarray, config: LabelConfig) -> np.ndarray:
    """Class index per feature (-1: nodata); class names or mapped values are accepted."""
    to_index = config.values_to_index
    by_name = {c.name.casefold(): i for i, c in enumerate(config.classes)}
    out = np.full(len(values), -1, dtype=np.int64)
    unknown: set[str] = set()
    for i, v in enumerate(values):
        if v is None:
            continue
        text = str(v).strip()
        number = _as_int(v)
        if number is not None:
            if number in config.nodata:
                continue
            if number in to_index:
                out[i] = to_index[number]
                continue
        elif text.casefold() in by_name:
            out[i] = by_name[text.casefold()]
            continue
        unknown.add(text)
    if unknown:
        names = ", ".join(f"{c.id} {c.name}" for c in config.classes)
        raise TrainingDataError(
            f"{path}: class values {sorted(unknown)[:10]} in column {config.class_column!r} are "
            f"not in the class list ({names}); add them to the classes or label_map, or list "
            "them in label_nodata"
        )
    return out


def _as_int(value: object) -> int | None:
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return int(number) if number.is_integer() else None


def open_labels(path: Path, config: LabelConfig, image: SceneInfo) -> LabelReader:
    """A label reader for ``path``: polygons by file suffix, otherwise a raster."""
    if not Path(path).exists():
        raise TrainingDataError(f"{path}: label file not found; check --labels")
    if Path(path).suffix.lower() in POLYGON_SUFFIXES:
        return PolygonLabels(Path(path), config, image)
    return RasterLabels(Path(path), config, image)


# ---------------------------------------------------------------------------------------------
# Augmentation.


@dataclass(frozen=True)
class Augmentation:
    """Joint augmentation of an image tile and its labels (training only).

    One of the 8 flips/rotations; a scale factor in ``1 ± scale_jitter`` (a window that much
    larger/smaller is read and resized to the tile: bilinear image, nearest labels); per band
    ``x * c + b`` on valid pixels with ``c`` in ``1 ± contrast`` and ``b`` in ``± brightness``
    (normalized units, i.e. standard deviations).
    """

    dihedral: bool = True
    scale_jitter: float = 0.1
    brightness: float = 0.1
    contrast: float = 0.1

    def read_size(self, tile_px: int, rng: np.random.Generator) -> int:
        """Size of the window to read for one tile (scale jitter)."""
        if self.scale_jitter <= 0:
            return tile_px
        return max(8, round(tile_px * rng.uniform(1 - self.scale_jitter, 1 + self.scale_jitter)))

    def apply(
        self, x: np.ndarray, y: np.ndarray, tile_px: int, rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray]:
        """(bands, s, s) normalized image and (s, s) labels -> (bands, t, t), (t, t)."""
        if x.shape[-1] != tile_px or x.shape[-2] != tile_px:
            x, y = resize_pair(x, y, tile_px)
        if self.dihedral:
            k = int(rng.integers(4))
            x, y = np.rot90(x, k, axes=(1, 2)), np.rot90(y, k)
            if rng.integers(2):
                x, y = x[:, :, ::-1], y[:, ::-1]
        x = np.ascontiguousarray(x)
        if self.brightness > 0 or self.contrast > 0:
            n = x.shape[0]
            c = rng.uniform(1 - self.contrast, 1 + self.contrast, n).astype(np.float32)
            b = rng.uniform(-self.brightness, self.brightness, n).astype(np.float32)
            valid = np.any(x != 0, axis=0)
            x = (x * c[:, None, None] + b[:, None, None]) * valid
        return x.astype(np.float32, copy=False), np.ascontiguousarray(y)


def resize_pair(x: np.ndarray, y: np.ndarray, size_px: int) -> tuple[np.ndarray, np.ndarray]:
    """Resize an image (bilinear) and its labels (nearest) to ``size_px`` square."""
    xt = torch.from_numpy(np.ascontiguousarray(x))[None]
    yt = torch.from_numpy(np.ascontiguousarray(y))[None, None].float()
    xr = F.interpolate(xt, size=(size_px, size_px), mode="bilinear", align_corners=False)
    yr = F.interpolate(yt, size=(size_px, size_px), mode="nearest")
    return xr[0].numpy(), yr[0, 0].numpy().astype(y.dtype)


# ---------------------------------------------------------------------------------------------
# Training scenes.


class SamplingMode(StrEnum):
    """How training tiles are drawn."""

    RANDOM = "random"
    GRID = "grid"
    BALANCED = "balanced"


@dataclass(frozen=True)
class TrainingScene:
    """An image GeoTIFF, its labels (raster or polygons) and the pixel window to use."""

    image: Path
    labels: Path
    window: str | None = None


@dataclass(frozen=True)
class SplitSettings:
    """Spatial train/validation split: blocks of ``block_px``, a share held out (seeded)."""

    block_px: int = 256
    val_fraction: float = 0.2
    seed: int = 0


@dataclass(frozen=True)
class TileRef:
    """A tile to read: scene index, read window and (validation) the block that is scored."""

    scene: int
    window: PixelWindow
    scored: PixelWindow | None = None


@dataclass
class _Scene:
    spec: TrainingScene
    info: SceneInfo
    region: PixelWindow
    labels: LabelReader
    image: rasterio.io.DatasetReader
    train_blocks: list[PixelWindow]
    val_blocks: list[PixelWindow]
    train_px: int = 0


def split_blocks(
    region: PixelWindow, settings: SplitSettings, salt: int = 0
) -> tuple[list[PixelWindow], list[PixelWindow]]:
    """(training blocks, validation blocks): a seeded share ``val_fraction`` of the blocks.

    With more than one block at least one is held out; a single block is all training.
    """
    all_blocks = BlockGrid.covering(region, settings.block_px).windows()
    n_val = round(settings.val_fraction * len(all_blocks))
    if settings.val_fraction > 0 and len(all_blocks) > 1:
        n_val = min(max(1, n_val), len(all_blocks) - 1)
    else:
        n_val = 0
    order = np.random.default_rng([settings.seed, salt]).permutation(len(all_blocks))
    held = set(order[:n_val].tolist())
    train = [b for i, b in enumerate(all_blocks) if i not in held]
    val = [b for i, b in enumerate(all_blocks) if i in held]
    return train, val


class TrainingData:
    """Opened, checked training scenes: statistics, tile sampling and tile reads.

    Use as a context manager (it holds open raster handles). Construction streams once over
    every scene's region block by block: it checks every label value, counts training and
    validation pixels per class, and accumulates the band statistics of the training blocks.
    """

    def __init__(
        self,
        scenes: Sequence[TrainingScene],
        labels: LabelConfig,
        *,
        band_indexes: Sequence[int],
        split: SplitSettings = SplitSettings(),
        tile_px: int = 256,
    ):
        if not scenes:
            raise ConfigError("no training scenes: give at least one --image/--labels pair")
        self.label_config = labels
        self.classes = labels.classes
        self.band_indexes = list(band_indexes)
        self.tile_px = tile_px
        self.split = split
        self._scenes: list[_Scene] = []
        self._balanced: tuple[list[TileRef], np.ndarray] | None = None
        try:
            for i, spec in enumerate(scenes):
                self._scenes.append(self._open(i, spec))
            self._stream_statistics()
        except BaseException:
            self.close()
            raise

    def _open(self, i: int, spec: TrainingScene) -> _Scene:
        info = open_scene(spec.image)
        needed = max(self.band_indexes)
        if info.band_count < needed:
            raise TrainingDataError(
                f"{spec.image}: has {info.band_count} band(s), the training config reads band "
                f"{needed}; give images with those bands or fewer band names"
            )
        region = parse_window(spec.window, info.grid.shape)
        if min(region.shape) < 16:
            raise TrainingDataError(
                f"{spec.image}: the training window {format_window(region)} is smaller than "
                "16 px; widen --window"
            )
        reader = open_labels(Path(spec.labels), self.label_config, info)
        train, val = split_blocks(region, self.split, salt=i)
        return _Scene(spec, info, region, reader, rasterio.open(spec.image), train, val)

    def _stream_statistics(self) -> None:
        n_classes = len(self.classes)
        self.train_counts = np.zeros(n_classes, dtype=np.int64)
        self.val_counts = np.zeros(n_classes, dtype=np.int64)
        n_bands = len(self.band_indexes)
        total, total_sq, count = np.zeros(n_bands), np.zeros(n_bands), 0
        for scene in self._scenes:
            for is_val, group in ((False, scene.train_blocks), (True, scene.val_blocks)):
                for block in group:
                    labels = scene.labels.read(block)
                    data, valid = read_window(scene.image, block, self.band_indexes)
                    labelled = labels[valid & (labels != IGNORE)]
                    counts = np.bincount(labelled, minlength=n_classes)[:n_classes]
                    if is_val:
                        self.val_counts += counts
                        continue
                    self.train_counts += counts
                    scene.train_px += int(labelled.size)
                    pixels = data[:, valid].astype(np.float64)
                    total += pixels.sum(axis=1)
                    total_sq += (pixels**2).sum(axis=1)
                    count += pixels.shape[1]
        if count == 0 or self.train_counts.sum() == 0:
            raise TrainingDataError(
                f"{self._scenes[0].spec.labels}: the training blocks hold no labelled pixel with "
                "valid image data; check the label values, label_nodata and --window"
            )
        mean = total / count
        std = np.sqrt(np.maximum(total_sq / count - mean**2, 1e-12))
        self.normalization = Normalization(mean=mean.tolist(), std=std.tolist())
        self._mean = mean.astype(np.float32)[:, None, None]
        self._std = std.astype(np.float32)[:, None, None]

    def __enter__(self) -> TrainingData:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        for scene in self._scenes:
            scene.image.close()
            scene.labels.close()

    # ------------------------------------------------------------------ reads

    @property
    def scenes(self) -> list[TrainingScene]:
        return [s.spec for s in self._scenes]

    def scene_info(self, i: int) -> SceneInfo:
        return self._scenes[i].info

    def region(self, i: int) -> PixelWindow:
        return self._scenes[i].region

    def read(self, ref: TileRef, *, size_px: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Normalized image (bands, t, t) float32 and class indices (t, t) uint8 for a tile.

        The window is clipped to the scene's region and padded back (invalid, ``IGNORE``).
        Training reads (``ref.scored`` None) hide validation labels; validation reads keep
        only the labels of the scored block.
        """
        scene = self._scenes[ref.scene]
        size_h = size_px or ref.window.height
        size_w = size_px or ref.window.width
        x = np.zeros((len(self.band_indexes), size_h, size_w), dtype=np.float32)
        y = np.full((size_h, size_w), IGNORE, dtype=np.uint8)
        part = ref.window.intersection(scene.region)
        if part is None:
            return x, y
        data, valid = read_window(scene.image, part, self.band_indexes)
        labels = scene.labels.read(part)
        labels[~valid] = IGNORE
        if ref.scored is None:
            for block in scene.val_blocks:
                hidden = block.intersection(part)
                if hidden is not None:
                    labels[hidden.relative_to(part)] = IGNORE
        else:
            keep = np.zeros(labels.shape, dtype=bool)
            scored = ref.scored.intersection(part)
            if scored is not None:
                keep[scored.relative_to(part)] = True
            labels[~keep] = IGNORE
        rows, cols = part.relative_to(ref.window)
        x[:, rows, cols] = (data.astype(np.float32) - self._mean) / self._std * valid
        y[rows, cols] = labels
        return x, y

    def read_training_tile(
        self, ref: TileRef, augmentation: Augmentation | None, rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray]:
        """A training tile of ``tile_px``: read (with scale jitter) and augmented."""
        if augmentation is None:
            return self.read(ref)
        size = augmentation.read_size(self.tile_px, rng)
        region = self._scenes[ref.scene].region
        centre_r = ref.window.row_off + ref.window.height // 2
        centre_c = ref.window.col_off + ref.window.width // 2
        window = _clamped(centre_r - size // 2, centre_c - size // 2, size, region)
        x, y = self.read(TileRef(ref.scene, window), size_px=size)
        return augmentation.apply(x, y, self.tile_px, rng)

    # ------------------------------------------------------------------ sampling

    def validation_tiles(self) -> list[TileRef]:
        """Tiles of ``tile_px`` that score every validation pixel exactly once.

        Each validation block is cut into chunks of at most ``tile_px``; a tile centred on each
        chunk (clamped to the region) gives the chunk context, and only the chunk is scored.
        """
        refs = []
        t = self.tile_px
        for i, scene in enumerate(self._scenes):
            for block in scene.val_blocks:
                for chunk in BlockGrid.covering(block, t).windows():
                    r = chunk.row_off + chunk.height // 2 - t // 2
                    c = chunk.col_off + chunk.width // 2 - t // 2
                    refs.append(TileRef(i, _clamped(r, c, t, scene.region), chunk))
        return refs

    def sampler(self, mode: SamplingMode, rng: np.random.Generator) -> Iterator[TileRef]:
        """An endless stream of training tiles drawn with ``rng``."""
        if mode == SamplingMode.RANDOM:
            return self._random_tiles(rng)
        if mode == SamplingMode.GRID:
            return self._grid_tiles(self._candidates(self.tile_px), rng)
        if self._balanced is None:
            candidates = self._candidates(max(1, self.tile_px // 2))
            self._balanced = (candidates, self.tile_weights(candidates))
        return self._balanced_tiles(*self._balanced, rng)

    def _in_training_block(self, scene: _Scene, row: int, col: int) -> bool:
        return not any(
            b.row_off <= row < b.row_end and b.col_off <= col < b.col_end for b in scene.val_blocks
        )

    def _random_tiles(self, rng: np.random.Generator) -> Iterator[TileRef]:
        weights = np.array([s.train_px for s in self._scenes], dtype=np.float64)
        weights /= weights.sum()
        t = self.tile_px
        while True:
            i = int(rng.choice(len(self._scenes), p=weights))
            scene = self._scenes[i]
            reg = scene.region
            for _ in range(50):
                r = int(rng.integers(reg.row_off, max(reg.row_off, reg.row_end - t) + 1))
                c = int(rng.integers(reg.col_off, max(reg.col_off, reg.col_end - t) + 1))
                window = _clamped(r, c, t, reg)
                centre = (window.row_off + window.height // 2, window.col_off + window.width // 2)
                if self._in_training_block(scene, *centre):
                    break
            yield TileRef(i, window)

    def _candidates(self, stride_px: int) -> list[TileRef]:
        """Tiles on a grid of ``stride_px`` over each region whose centre is a training pixel."""
        refs = []
        t = self.tile_px
        for i, scene in enumerate(self._scenes):
            reg = scene.region
            for r in stride_starts(reg.row_off, reg.row_end, t, stride_px):
                for c in stride_starts(reg.col_off, reg.col_end, t, stride_px):
                    window = _clamped(r, c, t, reg)
                    centre_r = window.row_off + window.height // 2
                    centre_c = window.col_off + window.width // 2
                    if self._in_training_block(scene, centre_r, centre_c):
                        refs.append(TileRef(i, window))
        if not refs:
            raise TrainingDataError(
                f"{self._scenes[0].spec.image}: no training tile fits outside the validation "
                "blocks; use a smaller --val-fraction or --tile-size"
            )
        return refs

    def _grid_tiles(self, candidates: list[TileRef], rng: np.random.Generator) -> Iterator[TileRef]:
        while True:
            for k in rng.permutation(len(candidates)):
                yield candidates[int(k)]

    def tile_weights(self, candidates: Sequence[TileRef], power: float = 0.5) -> np.ndarray:
        """Sampling weight per tile: ``max over its classes of (1 / frequency)^power``.

        Frequencies are those of the training labels; a tile holding a class at 1 % of the
        pixels is drawn 10x as often as one holding only a class at 100 %.
        """
        freq = self.train_counts / max(1, self.train_counts.sum())
        rarity = np.where(freq > 0, 1.0 / np.maximum(freq, 1e-12), 0.0) ** power
        weights = np.zeros(len(candidates))
        n = len(self.classes)
        for k, ref in enumerate(candidates):
            _, y = self.read(ref)
            present = np.bincount(y[y != IGNORE], minlength=n)[:n] > 0
            weights[k] = rarity[present].max() if present.any() else 0.0
        return weights

    def _balanced_tiles(
        self, candidates: list[TileRef], weights: np.ndarray, rng: np.random.Generator
    ) -> Iterator[TileRef]:
        if weights.sum() == 0:
            weights = np.ones(len(candidates))
        p = weights / weights.sum()
        jitter = self.tile_px // 4
        while True:
            ref = candidates[int(rng.choice(len(candidates), p=p))]
            reg = self._scenes[ref.scene].region
            dr, dc = (int(v) for v in rng.integers(-jitter, jitter + 1, 2))
            yield TileRef(
                ref.scene,
                _clamped(ref.window.row_off + dr, ref.window.col_off + dc, self.tile_px, reg),
            )

    # ------------------------------------------------------------------ summary

    def summary(self) -> dict[str, Any]:
        """What the model was trained on, for the package's training record."""
        names = [c.name for c in self.classes]
        total = max(1, int(self.train_counts.sum()))
        return {
            "scenes": [
                {
                    "image": str(s.spec.image),
                    "labels": str(s.spec.labels),
                    "window": format_window(s.region),
                    "train_blocks": len(s.train_blocks),
                    "val_blocks": len(s.val_blocks),
                }
                for s in self._scenes
            ],
            "split": {
                "block_px": self.split.block_px,
                "val_fraction": self.split.val_fraction,
                "seed": self.split.seed,
            },
            "train_pixels": dict(zip(names, self.train_counts.tolist(), strict=True)),
            "val_pixels": dict(zip(names, self.val_counts.tolist(), strict=True)),
            "train_fraction": {
                n: round(int(c) / total, 6) for n, c in zip(names, self.train_counts, strict=True)
            },
            "labels": self.label_config.to_json(),
        }


def _clamped(row: int, col: int, size_px: int, region: PixelWindow) -> PixelWindow:
    """A ``size_px`` square at (row, col) shifted inside ``region`` (at its origin if larger)."""
    r = max(region.row_off, min(row, region.row_end - size_px))
    c = max(region.col_off, min(col, region.col_end - size_px))
    return PixelWindow(r, c, size_px, size_px)


# ---------------------------------------------------------------------------------------------
# Class lists.


def read_class_list(source: Path | Sequence[Mapping[str, Any]]) -> tuple[ClassInfo, ...]:
    """Classes from a JSON/YAML file or inline list of ``{id, name, color}``.

    A mapping ``{"1": "Water", ...}`` (id -> name) is accepted too; colours then come from a
    fixed palette.
    """
    import yaml

    from geoseg.classes import validate_classes

    where = str(source) if isinstance(source, Path) else "classes"
    raw: Any = source
    try:
        if isinstance(source, Path):
            raw = yaml.safe_load(source.read_text(encoding="utf-8"))
        if isinstance(raw, Mapping):
            items = [
                {"id": int(k), **(v if isinstance(v, Mapping) else {"name": str(v)})}
                for k, v in raw.items()
            ]
        else:
            items = list(raw)
        classes = [
            ClassInfo(
                int(c["id"]), str(c["name"]), str(c.get("color") or _PALETTE[k % len(_PALETTE)])
            )
            for k, c in enumerate(items)
        ]
    except (OSError, ValueError, KeyError, TypeError, yaml.YAMLError) as exc:
        raise ConfigError(
            f"{where}: cannot read the class list ({exc}); write a list like "
            '[{"id": 1, "name": "water", "color": "#1f78b4"}]'
        ) from None
    return validate_classes(classes)


_PALETTE = (
    "#1f78b4",
    "#e31a1c",
    "#b2b2b2",
    "#33a02c",
    "#c8a050",
    "#b2df8a",
    "#ff7f00",
    "#a6cee3",
    "#6a3d9a",
    "#fb9a99",
    "#fdbf6f",
    "#cab2d6",
)
