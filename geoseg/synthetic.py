"""Deterministic synthetic landscapes: a 4-band image, its land-cover labels and an AOI.

A scene is described by a small `LandscapeSpec` (river and road polylines, lake and town
centres, field-grid parameters, a seed) and drawn by `render`, which returns any pixel window.
Every pixel is a pure function of (spec, row, col): randomness comes from integer hashes of the
pixel or lattice coordinates (a splitmix64 finalizer in numpy uint64 arithmetic), never from a
sequential random stream, and the per-pixel path uses only exact IEEE operations (+, -, *, /,
sqrt, floor). So a window is bit-identical to the same crop of a full render, and a 20k x 20k
scene can be streamed block by block with memory that grows with the block, not the scene.

The classes are learnable from spectra plus local texture but not trivially: there is
per-pixel noise, per-field and per-patch spectral variation, canopy texture, crop rows and
mixed pixels along every boundary.
"""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from numbers import Integral
from pathlib import Path

import numpy as np
import rasterio
import shapely
from affine import Affine
from pyproj import CRS, Transformer
from rasterio.windows import Window
from shapely.geometry import Polygon, mapping
from shapely.geometry.polygon import orient

from geoseg.classes import CLASS_NODATA, ClassInfo, colormap
from geoseg.errors import ConfigError, OutputError
from geoseg.io.outputs import classes_tags

BAND_NAMES: tuple[str, ...] = ("blue", "green", "red", "nir")
"""Band order of synthetic images (surface reflectance x 10000)."""

WATER, FOREST, GRASSLAND, CROPLAND, BUILT_UP = 0, 1, 2, 3, 4

SYNTHETIC_CLASSES: tuple[ClassInfo, ...] = (
    ClassInfo(WATER, "water", "#2b6cb0"),
    ClassInfo(FOREST, "forest", "#1e5631"),
    ClassInfo(GRASSLAND, "grassland", "#8fd16a"),
    ClassInfo(CROPLAND, "cropland", "#e0b43c"),
    ClassInfo(BUILT_UP, "built-up", "#b0413e"),
)
"""The five synthetic land-cover classes, ids 0..4."""

IMAGE_NODATA = 0
MIN_SIZE_PX = 16
TILE_PX = 256
"""GeoTIFF block size of written scenes."""

# ---------------------------------------------------------------------------------------------
# Spectra (blue, green, red, nir), reflectance x 10000.

_WATER_RIVER = (640.0, 700.0, 470.0, 240.0)
_WATER_CLEAR = (460.0, 520.0, 290.0, 140.0)
_WATER_GREEN = (500.0, 720.0, 430.0, 300.0)
_FOREST_DECIDUOUS = (290.0, 540.0, 310.0, 3400.0)
_FOREST_CONIFER = (210.0, 370.0, 200.0, 2300.0)
_GRASS = (430.0, 780.0, 640.0, 3050.0)
_DRY_GRASS = (620.0, 870.0, 930.0, 2600.0)
_CROPS = (
    (950.0, 1250.0, 1600.0, 2150.0),  # bare / tilled soil
    (620.0, 920.0, 880.0, 2650.0),  # young crop
    (330.0, 660.0, 400.0, 3900.0),  # vigorous green crop
    (860.0, 1160.0, 1400.0, 2500.0),  # ripe cereal
    (700.0, 1420.0, 1250.0, 3200.0),  # flowering rapeseed
)
_TRACK = (820.0, 1020.0, 1100.0, 2200.0)
_ROOFS = (
    (1500.0, 1560.0, 1650.0, 1950.0),  # concrete / light roofs
    (900.0, 1050.0, 1750.0, 2000.0),  # red tiles
    (700.0, 760.0, 800.0, 1000.0),  # dark roofs
)
_STREET = (800.0, 850.0, 900.0, 1050.0)
_ROAD = (920.0, 960.0, 1010.0, 1200.0)

# Fractions and shape parameters.
_GRASS_FIELD_SHARE = 0.42
_FOREST_CELL_PX = 90.0
_FOREST_THRESHOLD = 0.575
_FOREST_EDGE = 0.012
_PARK_SHARE = 0.08
_MIX_EDGE_PX = 0.8
_CHUNK_PX = 512
"""render() draws windows in chunks of at most this many px a side, to bound memory."""
_CAP = 4.0
"""Signed distances are clamped to this many px: beyond it a layer is certainly absent."""

_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_GOLDEN = 0x9E3779B97F4A7C15
_EDGES = ("top", "bottom", "left", "right")
_TOWN_TAGS = 1 << 24
_LAKE_TAGS = 2 << 24
"""Noise-field tags of the k-th town / lake start here, clear of the fixed tags below 100."""


# ---------------------------------------------------------------------------------------------
# Integer hashing and value noise: pure functions of integer coordinates.


def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64 finalizer: a bijective, well-mixing uint64 -> uint64 hash."""
    x = x ^ (x >> np.uint64(30))
    x = x * _M1
    x = x ^ (x >> np.uint64(27))
    x = x * _M2
    return x ^ (x >> np.uint64(31))


def _salt(seed: int, tag: int) -> np.uint64:
    """A 64-bit salt for one noise field, from the scene seed and a field tag."""
    key = np.array([(seed * _GOLDEN + tag * 0xD1B54A32D192ED03) & 0xFFFFFFFFFFFFFFFF], np.uint64)
    return _mix(key)[0]


def _hash2(i: np.ndarray, j: np.ndarray, salt: np.uint64) -> np.ndarray:
    """Hash of integer coordinate pairs (broadcast), salted; negative coordinates are fine."""
    iu = np.asarray(i, np.int64).view(np.uint64)
    ju = np.asarray(j, np.int64).view(np.uint64) & np.uint64(0xFFFFFFFF)
    return _mix((iu << np.uint64(32)) ^ ju ^ salt)


def _unit(h: np.ndarray, shift: int = 0, bits: int = 16) -> np.ndarray:
    """`bits` bits of a hash, starting at bit `shift`, as float32 in [0, 1)."""
    mask = np.uint64((1 << bits) - 1)
    return ((h >> np.uint64(shift)) & mask).astype(np.float32) * np.float32(1.0 / (1 << bits))


def _value_noise(rows: np.ndarray, cols: np.ndarray, cell_px: float, salt: np.uint64) -> np.ndarray:
    """Smooth hash-lattice noise in [0, 1) on the pixel grid rows x cols, lattice step cell_px.

    Lattice values are hashes of lattice indices; pixels interpolate them with a smoothstep,
    first along rows then along columns. Each pixel only depends on its own coordinates.
    """
    i0, wy = _lattice_coords(rows, cell_px)
    j0, wx = _lattice_coords(cols, cell_px)
    ilo, jlo = int(i0.min()), int(j0.min())
    li = np.arange(ilo, int(i0.max()) + 2)
    lj = np.arange(jlo, int(j0.max()) + 2)
    lattice = _unit(_hash2(li[:, None], lj[None, :], salt), 16, 24)
    top = lattice[i0 - ilo]
    bottom = lattice[i0 - ilo + 1]
    along_rows = top + (bottom - top) * wy[:, None]
    left = along_rows[:, j0 - jlo]
    right = along_rows[:, j0 - jlo + 1]
    return left + (right - left) * wx[None, :]


def _lattice_coords(pixels: np.ndarray, cell_px: float) -> tuple[np.ndarray, np.ndarray]:
    """Lattice index and smoothstep weight (float32) of pixel centres for one axis."""
    x = (pixels.astype(np.float64) + 0.5) / cell_px
    i = np.floor(x)
    f = (x - i).astype(np.float32)
    return i.astype(np.int64), f * f * (np.float32(3.0) - np.float32(2.0) * f)


def _fbm(
    rows: np.ndarray, cols: np.ndarray, cell_px: float, *, seed: int, tag: int, octaves: int = 3
) -> np.ndarray:
    """Fractal sum of value-noise octaves (halving cell, halving weight), normalised to [0, 1)."""
    total = np.zeros((rows.size, cols.size), np.float32)
    weight_sum = 0.0
    for k in range(octaves):
        weight = 0.5**k
        total += np.float32(weight) * _value_noise(rows, cols, cell_px / 2**k, _salt(seed, tag + k))
        weight_sum += weight
    return total * np.float32(1.0 / weight_sum)


def _pixel_hash(rows: np.ndarray, cols: np.ndarray, salt: np.uint64) -> np.ndarray:
    """One uint64 hash per pixel of the rows x cols grid."""
    return _hash2(rows[:, None], cols[None, :], salt)


# ---------------------------------------------------------------------------------------------
# The scene description.


@dataclass(frozen=True)
class Polyline:
    """A line in pixel coordinates (row, col of vertices) with a half-width at each vertex."""

    rows: tuple[float, ...]
    cols: tuple[float, ...]
    half_widths_px: tuple[float, ...]


@dataclass(frozen=True)
class Blob:
    """A disc in pixel coordinates: a lake lobe or a town."""

    row: float
    col: float
    radius_px: float
    variant: float = 0.0
    """0..1, picks a per-object spectral variant (lake colour)."""


@dataclass(frozen=True)
class FieldGrid:
    """Parcels on a grid rotated by angle_deg around the scene centre, sizes in px."""

    angle_deg: float
    cos: float
    sin: float
    centre_row: float
    centre_col: float
    strip_px: float
    min_field_px: float
    max_field_px: float
    block_px: float
    street_px: float


@dataclass(frozen=True)
class NodataMargin:
    """A swath-edge nodata band along one scene edge: depth varies linearly plus a wobble."""

    edge: str
    depth_start_px: float
    depth_end_px: float
    wobble_px: float


@dataclass(frozen=True)
class LandscapeSpec:
    """Everything needed to draw a synthetic scene: only small parameters, no pixel arrays."""

    height_px: int
    width_px: int
    seed: int
    res_m: float
    epsg: int
    origin_x: float
    origin_y: float
    fields: FieldGrid
    rivers: tuple[Polyline, ...]
    roads: tuple[Polyline, ...]
    lakes: tuple[Blob, ...]
    towns: tuple[Blob, ...]
    margins: tuple[NodataMargin, ...] = field(default=())

    @property
    def shape(self) -> tuple[int, int]:
        """(height_px, width_px)."""
        return (self.height_px, self.width_px)

    @property
    def transform(self) -> Affine:
        """North-up affine transform of the scene: pixel (col, row) -> (x, y) in the CRS."""
        return Affine(self.res_m, 0.0, self.origin_x, 0.0, -self.res_m, self.origin_y)

    @property
    def crs(self) -> str:
        """The scene CRS as 'EPSG:<code>'."""
        return f"EPSG:{self.epsg}"


def make_spec(
    height_px: int,
    width_px: int,
    seed: int,
    *,
    res_m: float = 10.0,
    epsg: int = 32633,
    origin: tuple[float, float] | None = None,
    nodata_margin_px: int = 0,
) -> LandscapeSpec:
    """Draw the parameters of a scene from a seed.

    `origin` is the (x, y) of the upper-left corner in the CRS; by default x = 500000 and the
    bottom edge lies at y = 5000000. Object counts grow with the scene area (rivers and roads
    with its extent) so a large scene looks like a tiling of small ones.
    """
    _check_size(height_px, width_px)
    if not res_m > 0:
        raise ConfigError(f"res_m must be positive, got {res_m}")
    if nodata_margin_px < 0 or nodata_margin_px * 3 > min(height_px, width_px):
        raise ConfigError(
            f"nodata_margin_px={nodata_margin_px} must be in 0..{min(height_px, width_px) // 3} "
            "(a third of the smaller scene side)"
        )
    _check_projected(epsg)
    if origin is None:
        origin = (500000.0, 5000000.0 + height_px * res_m)
    rng = _rng(seed, 0x5EED)
    fields = _draw_fields(rng, height_px, width_px)
    rivers = _draw_rivers(rng, height_px, width_px)
    towns = _draw_towns(rng, height_px, width_px)
    return LandscapeSpec(
        height_px=height_px,
        width_px=width_px,
        seed=seed,
        res_m=float(res_m),
        epsg=int(epsg),
        origin_x=float(origin[0]),
        origin_y=float(origin[1]),
        fields=fields,
        rivers=rivers,
        roads=_draw_roads(rng, height_px, width_px),
        lakes=_draw_lakes(rng, height_px, width_px, towns),
        towns=towns,
        margins=_draw_margins(rng, height_px, width_px, nodata_margin_px),
    )


def _check_projected(epsg: int) -> None:
    """Refuse unknown EPSG codes and geographic CRSs (pixels are res_m metres)."""
    try:
        crs = CRS.from_epsg(epsg)
    except Exception as exc:
        raise ConfigError(f"epsg={epsg} is not a known EPSG code: use e.g. 32633") from exc
    if not crs.is_projected:
        raise ConfigError(f"epsg={epsg} is not a projected CRS: use a UTM zone such as 32633")


def _rng(seed: int, tag: int) -> np.random.Generator:
    """A generator for drawing scene parameters (never pixels) from the seed and a purpose tag."""
    return np.random.default_rng([seed % (1 << 64), tag])


def _check_size(height_px: int, width_px: int) -> None:
    """Refuse scenes too small to hold every class."""
    if min(height_px, width_px) < MIN_SIZE_PX:
        raise ConfigError(
            f"synthetic scene size {height_px}x{width_px} px is too small: "
            f"use at least {MIN_SIZE_PX} px per side"
        )


def _draw_fields(rng: np.random.Generator, height_px: int, width_px: int) -> FieldGrid:
    """A slightly rotated parcel grid centred on the scene."""
    angle = float(rng.uniform(-12.0, 12.0))
    rad = math.radians(angle)
    return FieldGrid(
        angle_deg=angle,
        cos=math.cos(rad),
        sin=math.sin(rad),
        centre_row=height_px / 2 + float(rng.uniform(-50, 50)),
        centre_col=width_px / 2 + float(rng.uniform(-50, 50)),
        strip_px=float(rng.uniform(28.0, 44.0)),
        min_field_px=22.0,
        max_field_px=70.0,
        block_px=float(rng.uniform(8.0, 12.0)),
        street_px=float(rng.choice([1.0, 2.0])),
    )


def _max_river_width_px(height_px: int, width_px: int) -> float:
    """Rivers widen with the scene: 5 px on tiny scenes up to 12 px from 768 px on."""
    return float(np.clip(max(height_px, width_px) / 64.0, 5.0, 12.0))


def _draw_rivers(rng: np.random.Generator, height_px: int, width_px: int) -> tuple[Polyline, ...]:
    """Meandering rivers from one edge to the opposite one; more on larger scenes."""
    count = max(1, round(max(height_px, width_px) / 3000))
    max_width = _max_river_width_px(height_px, width_px)
    return tuple(_meander(rng, height_px, width_px, 3.0, max_width) for _ in range(count))


def _edge_point(
    rng: np.random.Generator, edge: str, height_px: int, width_px: int, outside_px: float
) -> tuple[float, float]:
    """A random point on (just outside) one edge, away from the corners."""
    t = float(rng.uniform(0.15, 0.85))
    return {
        "top": (-outside_px, t * width_px),
        "bottom": (height_px + outside_px, t * width_px),
        "left": (t * height_px, -outside_px),
        "right": (t * height_px, width_px + outside_px),
    }[edge]


def _opposite(edge: str) -> str:
    return {"top": "bottom", "bottom": "top", "left": "right", "right": "left"}[edge]


def _meander(
    rng: np.random.Generator, height_px: int, width_px: int, min_width: float, max_width: float
) -> Polyline:
    """A sinuous line steered towards the opposite edge; heading = bearing + meander waves."""
    start_edge = str(rng.choice(_EDGES))
    pad = max_width + 2 * _CAP
    row, col = _edge_point(rng, start_edge, height_px, width_px, pad)
    target = _edge_point(rng, _opposite(start_edge), height_px, width_px, pad)
    step = 5.0
    wave1 = (float(rng.uniform(120, 260)), float(rng.uniform(0, 2 * math.pi)))
    wave2 = (float(rng.uniform(50, 110)), float(rng.uniform(0, 2 * math.pi)))
    width_wave = (float(rng.uniform(150, 400)), float(rng.uniform(0, 2 * math.pi)))
    amp1, amp2 = float(rng.uniform(0.6, 0.85)), float(rng.uniform(0.2, 0.35))
    drift = 0.0
    rows, cols, half_widths = [row], [col], []
    s = 0.0
    limit = int(4 * (height_px + width_px) / step) + 10
    for _ in range(limit):
        width = min_width + (max_width - min_width) * (
            0.5 + 0.5 * math.sin(2 * math.pi * s / width_wave[0] + width_wave[1])
        )
        half_widths.append(width / 2)
        if math.hypot(target[0] - row, target[1] - col) < step:
            break
        drift = float(np.clip(drift + rng.normal(0, 0.05), -0.3, 0.3))
        bearing = math.atan2(target[0] - row, target[1] - col)
        heading = (
            bearing
            + amp1 * math.sin(2 * math.pi * s / wave1[0] + wave1[1])
            + amp2 * math.sin(2 * math.pi * s / wave2[0] + wave2[1])
            + drift
        )
        row += step * math.sin(heading)
        col += step * math.cos(heading)
        s += step
        rows.append(row)
        cols.append(col)
    return Polyline(tuple(rows), tuple(cols), tuple(half_widths))


def _draw_roads(rng: np.random.Generator, height_px: int, width_px: int) -> tuple[Polyline, ...]:
    """Straight-ish roads, 1-3 px wide, crossing the scene between two different edges."""
    count = max(2, round((height_px + width_px) / 600))
    roads = []
    for _ in range(count):
        start_edge, end_edge = (str(e) for e in rng.choice(_EDGES, size=2, replace=False))
        p0 = np.array(_edge_point(rng, start_edge, height_px, width_px, 2 * _CAP))
        p1 = np.array(_edge_point(rng, end_edge, height_px, width_px, 2 * _CAP))
        direction = p1 - p0
        normal = np.array([-direction[1], direction[0]]) / np.hypot(*direction)
        knots = [p0]
        for t in (1 / 3, 2 / 3):
            bend = float(rng.uniform(-0.04, 0.04)) * np.hypot(*direction)
            knots.append(p0 + t * direction + bend * normal)
        knots.append(p1)
        half_width = float(rng.choice([0.6, 1.0, 1.5]))
        rows, cols = _subdivide(np.array(knots), max_step_px=48.0)
        roads.append(Polyline(rows, cols, (half_width,) * len(rows)))
    return tuple(roads)


def _subdivide(
    knots: np.ndarray, max_step_px: float
) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Split each knot-to-knot segment so no piece is longer than max_step_px."""
    rows, cols = [float(knots[0, 0])], [float(knots[0, 1])]
    for a, b in itertools.pairwise(knots):
        pieces = max(1, math.ceil(float(np.hypot(*(b - a))) / max_step_px))
        for k in range(1, pieces + 1):
            p = a + (b - a) * (k / pieces)
            rows.append(float(p[0]))
            cols.append(float(p[1]))
    return tuple(rows), tuple(cols)


def _draw_towns(rng: np.random.Generator, height_px: int, width_px: int) -> tuple[Blob, ...]:
    """Town centres and radii; at least one town per scene."""
    count = max(1, round(height_px * width_px / 480**2))
    scale = min(1.0, min(height_px, width_px) / 512)
    return tuple(
        Blob(
            row=float(rng.uniform(0.1, 0.9) * height_px),
            col=float(rng.uniform(0.1, 0.9) * width_px),
            radius_px=float(rng.uniform(30, 52) * max(scale, 0.25)),
        )
        for _ in range(count)
    )


def _draw_lakes(
    rng: np.random.Generator, height_px: int, width_px: int, towns: Sequence[Blob]
) -> tuple[Blob, ...]:
    """Lakes as clusters of 1-3 overlapping lobes, kept away from town centres."""
    count = max(1, round(height_px * width_px / 700**2))
    scale = min(1.0, min(height_px, width_px) / 512)
    lobes: list[Blob] = []
    for _ in range(count):
        radius = float(rng.uniform(18, 38) * max(scale, 0.25))
        for _attempt in range(20):
            row = float(rng.uniform(0.1, 0.9) * height_px)
            col = float(rng.uniform(0.1, 0.9) * width_px)
            if all(
                math.hypot(row - t.row, col - t.col) > radius + 1.5 * t.radius_px for t in towns
            ):
                break
        variant = float(rng.uniform())
        lobes.append(Blob(row, col, radius, variant))
        for _ in range(int(rng.integers(0, 3))):
            angle = float(rng.uniform(0, 2 * math.pi))
            offset = radius * float(rng.uniform(0.5, 0.9))
            lobes.append(
                Blob(
                    row + offset * math.sin(angle),
                    col + offset * math.cos(angle),
                    radius * float(rng.uniform(0.45, 0.75)),
                    variant,
                )
            )
    return tuple(lobes)


def _draw_margins(
    rng: np.random.Generator, height_px: int, width_px: int, margin_px: int
) -> tuple[NodataMargin, ...]:
    """One or two adjacent swath edges with a slanted, wobbly nodata band."""
    if margin_px == 0:
        return ()
    first = str(rng.choice(_EDGES))
    edges = [first]
    if rng.uniform() < 0.5:
        edges.append(
            str(rng.choice(["left", "right"] if first in ("top", "bottom") else ["top", "bottom"]))
        )
    margins = []
    for edge in edges:
        a, b = float(rng.uniform(0.3, 1.0)), float(rng.uniform(0.3, 1.0))
        margins.append(
            NodataMargin(edge, a * margin_px * 0.85, b * margin_px * 0.85, 0.1 * margin_px)
        )
    return tuple(margins)


# ---------------------------------------------------------------------------------------------
# Rendering.


def render(
    spec: LandscapeSpec, row_off: int, col_off: int, height: int, width: int
) -> tuple[np.ndarray, np.ndarray]:
    """Draw one window of the scene: image (4, h, w) uint16 and labels (h, w) uint8.

    The result is bit-identical to the same crop of a full render. Nodata pixels are 0 in every
    band and 255 in the labels; valid pixels are >= 1 in every band.
    """
    _check_window(spec, row_off, col_off, height, width)
    image = np.empty((4, height, width), np.uint16)
    labels = np.empty((height, width), np.uint8)
    for r in range(0, height, _CHUNK_PX):
        for c in range(0, width, _CHUNK_PX):
            rows = np.arange(row_off + r, row_off + min(r + _CHUNK_PX, height), dtype=np.int64)
            cols = np.arange(col_off + c, col_off + min(c + _CHUNK_PX, width), dtype=np.int64)
            chunk = (slice(r, r + rows.size), slice(c, c + cols.size))
            image[:, chunk[0], chunk[1]], labels[chunk] = _render_chunk(spec, rows, cols)
    return image, labels


def _render_chunk(
    spec: LandscapeSpec, rows: np.ndarray, cols: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Draw the pixels rows x cols (absolute indices): layers bottom to top, noise, nodata."""
    seed = spec.seed
    img = np.empty((4, rows.size, cols.size), np.float32)
    labels = np.empty((rows.size, cols.size), np.uint8)
    _paint_fields(spec, rows, cols, img, labels)
    _paint_forest(seed, rows, cols, img, labels)
    _paint_towns(spec, rows, cols, img, labels)
    _paint_roads(spec, rows, cols, img, labels)
    _paint_river(spec, rows, cols, img, labels)
    _paint_lakes(spec, rows, cols, img, labels)
    _add_sensor_noise(seed, rows, cols, img)
    image = np.clip(np.rint(img), 1, 10000).astype(np.uint16)
    nodata = _nodata_mask(spec, rows, cols)
    if nodata is not None:
        image[:, nodata] = IMAGE_NODATA
        labels[nodata] = CLASS_NODATA
    return image, labels


def _check_window(spec: LandscapeSpec, row_off: int, col_off: int, height: int, width: int) -> None:
    """Refuse empty windows or windows that leave the scene."""
    if height <= 0 or width <= 0:
        raise ConfigError(f"render window {height}x{width} px is empty: give a positive size")
    if (
        row_off < 0
        or col_off < 0
        or row_off + height > spec.height_px
        or col_off + width > spec.width_px
    ):
        raise ConfigError(
            f"render window rows {row_off}..{row_off + height}, cols {col_off}..{col_off + width} "
            f"leaves the {spec.height_px}x{spec.width_px} px scene"
        )


def _spectrum(values: Sequence[float]) -> np.ndarray:
    """A (4, 1, 1) float32 spectrum for broadcasting over a window."""
    return np.asarray(values, np.float32).reshape(4, 1, 1)


def _table(rows_of_spectra: Sequence[Sequence[float]]) -> np.ndarray:
    """A (4, n) float32 band-by-variant table for gathering per-pixel spectra."""
    return np.asarray(rows_of_spectra, np.float32).T.copy()


def _blend(target: np.ndarray, layer: np.ndarray, alpha: np.ndarray) -> None:
    """In place: target = target + alpha * (layer - target), per band."""
    target += alpha * (layer - target)


def _rotated(grid: FieldGrid, rows: np.ndarray, cols: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pixel centres in the field-grid frame: u along the rotated x axis, v along rotated y."""
    y = (rows.astype(np.float64) + 0.5 - grid.centre_row)[:, None]
    x = (cols.astype(np.float64) + 0.5 - grid.centre_col)[None, :]
    u = x * grid.cos + y * grid.sin
    v = y * grid.cos - x * grid.sin
    return u, v


def _paint_fields(
    spec: LandscapeSpec, rows: np.ndarray, cols: np.ndarray, img: np.ndarray, labels: np.ndarray
) -> None:
    """Base layer: cropland and grassland parcels with per-field spectra, rows and boundaries."""
    grid, seed = spec.fields, spec.seed
    u, v = _rotated(grid, rows, cols)
    strip = np.floor(v / grid.strip_px)
    h_strip = _hash2(strip.astype(np.int64), 0, _salt(seed, 11))
    field_px = grid.min_field_px + (grid.max_field_px - grid.min_field_px) * _unit(h_strip, 0)
    shifted = u + _unit(h_strip, 16).astype(np.float64) * field_px
    col_idx = np.floor(shifted / field_px)
    fu = shifted / field_px - col_idx
    fv = v / grid.strip_px - strip
    h_field = _hash2(strip.astype(np.int64), col_idx.astype(np.int64), _salt(seed, 12))
    split = _unit(h_field, 48, 8) < 0.3
    sub = split & (fv >= 0.5)
    h_field = np.where(sub, _mix(h_field), h_field)
    fv = np.where(split, np.where(sub, fv - 0.5, fv) * 2.0, fv)
    strip_h = np.where(split, grid.strip_px / 2, grid.strip_px)

    is_grass = _unit(h_field, 0, 8) < _GRASS_FIELD_SHARE
    crop_type = (_unit(h_field, 8, 8) * len(_CROPS)).astype(np.intp)
    crops = _table(_CROPS)[:, crop_type]
    dryness = _unit(h_field, 24, 8) ** 2  # most meadows green, a few dry or mown
    grass = _spectrum(_GRASS) + (_spectrum(_DRY_GRASS) - _spectrum(_GRASS)) * dryness
    base = np.where(is_grass, grass, crops)
    brightness = np.float32(0.88) + np.float32(0.24) * _unit(h_field, 32, 8)
    nir_gain = np.float32(0.9) + np.float32(0.2) * _unit(h_field, 40, 8)
    img[:] = base * brightness
    img[3] *= nir_gain

    # Crop rows: a triangle wave across the field, along u or v per field.
    period = np.float32(2.5) + np.float32(3.0) * _unit(h_field, 56, 8)
    along = np.where(_unit(h_field, 16, 8) < 0.5, u, v).astype(np.float32) / period
    rows_wave = np.abs(along - np.floor(along) - np.float32(0.5)) - np.float32(0.25)
    texture = np.float32(0.05) * (_value_noise(rows, cols, 7.0, _salt(seed, 13)) - np.float32(0.5))
    img *= (
        np.float32(1.0)
        + texture
        + np.where(is_grass, np.float32(0.0), np.float32(0.16) * rows_wave)
    )

    # Field boundaries (tracks, hedges): mixed pixels within a px of the parcel edge.
    edge_dist = np.minimum(
        np.minimum(fu, 1.0 - fu) * field_px, np.minimum(fv, 1.0 - fv) * strip_h
    ).astype(np.float32)
    edge_alpha = np.clip(np.float32(1.0) - edge_dist / np.float32(_MIX_EDGE_PX), 0, 1)
    _blend(img, _spectrum(_TRACK), np.float32(0.6) * edge_alpha)
    labels[:] = np.where(is_grass, GRASSLAND, CROPLAND)


def _paint_forest(
    seed: int, rows: np.ndarray, cols: np.ndarray, img: np.ndarray, labels: np.ndarray
) -> None:
    """Forest patches where low-frequency noise exceeds a threshold; canopy texture inside."""
    density = _fbm(rows, cols, _FOREST_CELL_PX, seed=seed, tag=20, octaves=4)
    alpha = np.clip(
        np.float32(0.5) + (density - np.float32(_FOREST_THRESHOLD)) / np.float32(_FOREST_EDGE), 0, 1
    )
    conifer = _value_noise(rows, cols, 150.0, _salt(seed, 30))
    forest = (
        _spectrum(_FOREST_DECIDUOUS)
        + (_spectrum(_FOREST_CONIFER) - _spectrum(_FOREST_DECIDUOUS)) * conifer
    )
    crowns = _value_noise(rows, cols, 2.3, _salt(seed, 31)) - np.float32(0.5)
    shade = _value_noise(rows, cols, 9.0, _salt(seed, 32)) - np.float32(0.5)
    forest = forest * (np.float32(1.0) + np.float32(0.45) * crowns + np.float32(0.15) * shade)
    _blend(img, forest, alpha)
    labels[alpha > 0.5] = FOREST


def _block_indices(
    grid: FieldGrid, rows: np.ndarray, cols: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Town block indices (bu, bv) of each pixel and its distance (px) to the block edge."""
    u, v = _rotated(grid, rows, cols)
    bu, bv = np.floor(u / grid.block_px), np.floor(v / grid.block_px)
    fu, fv = u / grid.block_px - bu, v / grid.block_px - bv
    edge = np.minimum(np.minimum(fu, 1 - fu), np.minimum(fv, 1 - fv)) * grid.block_px
    return bu.astype(np.int64), bv.astype(np.int64), edge.astype(np.float32), u


def _paint_towns(
    spec: LandscapeSpec, rows: np.ndarray, cols: np.ndarray, img: np.ndarray, labels: np.ndarray
) -> None:
    """Towns: whole street blocks near a town centre become built-up (some become parks)."""
    grid, seed = spec.fields, spec.seed
    for k, town in enumerate(spec.towns):
        reach = 1.4 * town.radius_px + 2 * grid.block_px
        sub = _sub_window(
            rows, cols, (town.row - reach, town.row + reach, town.col - reach, town.col + reach)
        )
        if sub is None:
            continue
        rs, cs, r_sl, c_sl = sub
        bu, bv, edge, _ = _block_indices(grid, rs, cs)
        # Block centre back in pixel coordinates: membership is decided per block.
        cu = (bu.astype(np.float64) + 0.5) * grid.block_px
        cv = (bv.astype(np.float64) + 0.5) * grid.block_px
        centre_row = grid.centre_row + cu * grid.sin + cv * grid.cos
        centre_col = grid.centre_col + cu * grid.cos - cv * grid.sin
        dist = np.sqrt((centre_row - town.row) ** 2 + (centre_col - town.col) ** 2) / town.radius_px
        h_block = _hash2(bu, bv, _salt(seed, _TOWN_TAGS + 2 * k))
        inside = dist + 0.5 * (_unit(h_block, 0, 16).astype(np.float64) - 0.5) < 1.0
        if not inside.any():
            continue
        park = _unit(h_block, 16, 8) < _PARK_SHARE
        roof = _table(_ROOFS)[:, (_unit(h_block, 24, 8) * len(_ROOFS)).astype(np.intp)]
        h_px = _pixel_hash(rs // 2, cs // 2, _salt(seed, _TOWN_TAGS + 2 * k + 1))
        roof = roof * (np.float32(0.8) + np.float32(0.4) * _unit(h_px, 0, 8))
        gardens = np.float32(0.3) * _unit(h_px, 8, 8) ** 2
        roof = roof + (_spectrum(_GRASS) - roof) * gardens
        street = edge < np.float32(grid.street_px / 2)
        built = np.where(street, _spectrum(_STREET), roof)
        layer = np.where(park & ~street, _spectrum(_GRASS), built)
        target = img[:, r_sl, c_sl]
        target[:] = np.where(inside, layer, target)
        lab = labels[r_sl, c_sl]
        lab[inside] = np.where(park & ~street, GRASSLAND, BUILT_UP)[inside]


def _sub_window(
    rows: np.ndarray, cols: np.ndarray, box: tuple[float, float, float, float]
) -> tuple[np.ndarray, np.ndarray, slice, slice] | None:
    """The part of the window that may hold pixel centres in box = (r0, r1, c0, c1), or None.

    Pixels left out certainly have their centre outside the box.
    """
    r0, r1, c0, c1 = box
    ra = max(0, math.floor(r0) - int(rows[0]))
    rb = min(rows.size, math.ceil(r1) + 1 - int(rows[0]))
    ca = max(0, math.floor(c0) - int(cols[0]))
    cb = min(cols.size, math.ceil(c1) + 1 - int(cols[0]))
    if ra >= rb or ca >= cb:
        return None
    return rows[ra:rb], cols[ca:cb], slice(ra, rb), slice(ca, cb)


def _polyline_distance(lines: Sequence[Polyline], rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """Signed distance (px) to the union of variable-width polylines, clamped to <= _CAP.

    Only segments whose padded bounding box touches the window are visited, each on its own
    sub-window; a skipped segment is provably farther than _CAP, so the clamp makes the result
    independent of the window.
    """
    dist = np.full((rows.size, cols.size), _CAP, np.float64)
    for line in lines:
        pr, pc = np.asarray(line.rows), np.asarray(line.cols)
        hw = np.asarray(line.half_widths_px)
        pad = _CAP + np.maximum(hw[:-1], hw[1:])
        lo_r, hi_r = np.minimum(pr[:-1], pr[1:]) - pad, np.maximum(pr[:-1], pr[1:]) + pad
        lo_c, hi_c = np.minimum(pc[:-1], pc[1:]) - pad, np.maximum(pc[:-1], pc[1:]) + pad
        touching = (
            (hi_r >= rows[0]) & (lo_r <= rows[-1] + 1) & (hi_c >= cols[0]) & (lo_c <= cols[-1] + 1)
        )
        for s in np.flatnonzero(touching):
            sub = _sub_window(rows, cols, (lo_r[s], hi_r[s], lo_c[s], hi_c[s]))
            if sub is None:
                continue
            rs, cs, r_sl, c_sl = sub
            d = _segment_distance(
                rs, cs, (pr[s], pc[s]), (pr[s + 1], pc[s + 1]), (hw[s], hw[s + 1])
            )
            np.minimum(dist[r_sl, c_sl], d, out=dist[r_sl, c_sl])
    return dist


def _segment_distance(
    rows: np.ndarray,
    cols: np.ndarray,
    start: tuple[float, float],
    end: tuple[float, float],
    half_widths: tuple[float, float],
) -> np.ndarray:
    """Distance from pixel centres to a segment minus the half-width interpolated along it.

    `start` and `end` are (row, col) in px, `half_widths` the half-widths at start and end.
    """
    y = (rows.astype(np.float64) + 0.5 - start[0])[:, None]
    x = (cols.astype(np.float64) + 0.5 - start[1])[None, :]
    dr, dc = end[0] - start[0], end[1] - start[1]
    t = np.clip((y * dr + x * dc) / (dr * dr + dc * dc), 0.0, 1.0)
    ey, ex = y - t * dr, x - t * dc
    hw0, hw1 = half_widths
    return np.sqrt(ey * ey + ex * ex) - (hw0 + t * (hw1 - hw0))


def _near(dist: np.ndarray) -> tuple[slice, slice] | None:
    """Bounding box of the pixels closer than _CAP to a line layer, or None if there are none.

    Outside it every pixel sits at the clamp, where the layer is certainly absent, so painting
    only inside the box changes no value.
    """
    close = dist < _CAP
    row_any, col_any = close.any(axis=1), close.any(axis=0)
    if not row_any.any():
        return None
    r = np.flatnonzero(row_any)
    c = np.flatnonzero(col_any)
    return slice(int(r[0]), int(r[-1]) + 1), slice(int(c[0]), int(c[-1]) + 1)


def _paint_roads(
    spec: LandscapeSpec, rows: np.ndarray, cols: np.ndarray, img: np.ndarray, labels: np.ndarray
) -> None:
    """Asphalt roads with soft (mixed) edges."""
    dist = _polyline_distance(spec.roads, rows, cols)
    box = _near(dist)
    if box is None:
        return
    r_sl, c_sl = box
    alpha = np.clip(np.float32(0.5) - dist[box].astype(np.float32) / np.float32(0.7), 0, 1)
    _blend(img[:, r_sl, c_sl], _spectrum(_ROAD), alpha)
    labels[box][alpha > 0.5] = BUILT_UP


def _paint_river(
    spec: LandscapeSpec, rows: np.ndarray, cols: np.ndarray, img: np.ndarray, labels: np.ndarray
) -> None:
    """Rivers with irregular banks (distance warped by noise) and mixed bank pixels."""
    dist = _polyline_distance(spec.rivers, rows, cols)
    box = _near(dist)
    if box is None:
        return
    r_sl, c_sl = box
    rs, cs = rows[r_sl], cols[c_sl]
    banks = _value_noise(rs, cs, 5.0, _salt(spec.seed, 50)) - np.float32(0.5)
    alpha = np.clip(
        np.float32(0.5)
        - (dist[box].astype(np.float32) + np.float32(1.2) * banks) / np.float32(_MIX_EDGE_PX),
        0,
        1,
    )
    turbidity = _value_noise(rs, cs, 40.0, _salt(spec.seed, 51)) - np.float32(0.5)
    water = _spectrum(_WATER_RIVER) * (np.float32(1.0) + np.float32(0.1) * turbidity)
    _blend(img[:, r_sl, c_sl], water, alpha)
    labels[box][alpha > 0.5] = WATER


def _paint_lakes(
    spec: LandscapeSpec, rows: np.ndarray, cols: np.ndarray, img: np.ndarray, labels: np.ndarray
) -> None:
    """Lakes: union of noise-warped discs; colour varies per lake from clear to greenish."""
    for k, lobe in enumerate(spec.lakes):
        reach = 1.5 * lobe.radius_px
        sub = _sub_window(
            rows, cols, (lobe.row - reach, lobe.row + reach, lobe.col - reach, lobe.col + reach)
        )
        if sub is None:
            continue
        rs, cs, r_sl, c_sl = sub
        y = (rs.astype(np.float64) + 0.5 - lobe.row)[:, None]
        x = (cs.astype(np.float64) + 0.5 - lobe.col)[None, :]
        q = (np.sqrt(y * y + x * x) / lobe.radius_px).astype(np.float32)
        warp = _fbm(
            rs,
            cs,
            max(lobe.radius_px / 1.5, 4.0),
            seed=spec.seed,
            tag=_LAKE_TAGS + 2 * k,
            octaves=2,
        )
        q = q + np.float32(0.5) * (warp - np.float32(0.5))
        alpha = np.clip(
            np.float32(0.5) + (np.float32(1.0) - q) * np.float32(lobe.radius_px / _MIX_EDGE_PX),
            0,
            1,
        )
        colour = np.asarray(_WATER_CLEAR, np.float32) + lobe.variant * (
            np.asarray(_WATER_GREEN, np.float32) - np.asarray(_WATER_CLEAR, np.float32)
        )
        _blend(img[:, r_sl, c_sl], colour.reshape(4, 1, 1), alpha)
        lab = labels[r_sl, c_sl]
        lab[alpha > 0.5] = WATER


def _add_sensor_noise(seed: int, rows: np.ndarray, cols: np.ndarray, img: np.ndarray) -> None:
    """Per-pixel, per-band noise: ~3.7 % multiplicative plus ~20 DN additive (triangular)."""
    h_mul = _pixel_hash(rows, cols, _salt(seed, 70))
    h_add = _pixel_hash(rows, cols, _salt(seed, 71))
    for b in range(4):
        mul = _unit(h_mul, 16 * b, 8) + _unit(h_mul, 16 * b + 8, 8) - np.float32(1.0)
        add = _unit(h_add, 16 * b, 8) + _unit(h_add, 16 * b + 8, 8) - np.float32(1.0)
        img[b] *= np.float32(1.0) + np.float32(0.09) * mul
        img[b] += np.float32(50.0) * add


def _nodata_mask(spec: LandscapeSpec, rows: np.ndarray, cols: np.ndarray) -> np.ndarray | None:
    """True where a swath-edge margin covers the pixel; None when the scene has no margin."""
    if not spec.margins:
        return None
    mask = np.zeros((rows.size, cols.size), bool)
    for k, margin in enumerate(spec.margins):
        along, across, length, extent = {
            "top": (cols, rows, spec.width_px, None),
            "bottom": (cols, rows, spec.width_px, spec.height_px),
            "left": (rows, cols, spec.height_px, None),
            "right": (rows, cols, spec.height_px, spec.width_px),
        }[margin.edge]
        t = (along.astype(np.float64) + 0.5) / length
        wobble = _value_noise(along, np.zeros(1, np.int64), 40.0, _salt(spec.seed, 80 + k))[:, 0]
        depth = (
            margin.depth_start_px
            + (margin.depth_end_px - margin.depth_start_px) * t
            + margin.wobble_px * (wobble.astype(np.float64) - 0.5) * 2
        )
        pos = across.astype(np.float64) + 0.5
        inward = pos if extent is None else extent - pos
        band = inward[None, :] < depth[:, None]
        mask |= band if margin.edge in ("left", "right") else band.T
    return mask


# ---------------------------------------------------------------------------------------------
# Whole scenes in memory.


@dataclass(frozen=True, eq=False)
class Landscape:
    """A rendered scene: image (4, h, w) uint16, labels (h, w) uint8 and its georeferencing."""

    image: np.ndarray
    labels: np.ndarray
    transform: Affine
    crs: str
    image_nodata: int = IMAGE_NODATA
    label_nodata: int = CLASS_NODATA


def _size_pair(size_px: int | tuple[int, int]) -> tuple[int, int]:
    """(height, width) from an int (square) or a pair."""
    if isinstance(size_px, Integral):
        return int(size_px), int(size_px)
    if not isinstance(size_px, Sequence) or len(size_px) != 2:
        raise ConfigError(f"size_px must be an int or (height, width), got {size_px!r}")
    return int(size_px[0]), int(size_px[1])


def make_landscape(size_px: int | tuple[int, int], seed: int, **spec_options: object) -> Landscape:
    """Render a whole synthetic scene in memory (for small scenes: tests, notebooks)."""
    height, width = _size_pair(size_px)
    spec = make_spec(height, width, seed, **spec_options)  # type: ignore[arg-type]
    image, labels = render(spec, 0, 0, height, width)
    return Landscape(image, labels, spec.transform, spec.crs)


# ---------------------------------------------------------------------------------------------
# Files.


def _partial(path: Path) -> Path:
    """Temporary name beside `path`; renamed to `path` once the file is complete."""
    return path.with_name(path.name + ".partial")


def write_scene(
    spec: LandscapeSpec, image_path: str | Path, labels_path: str | Path, block_px: int = 1024
) -> None:
    """Write the scene as tiled, DEFLATE-compressed GeoTIFFs, rendering one block at a time.

    Blocks of block_px x block_px are rendered and written in row-major order, so memory stays
    bounded by the block, whatever the scene size. Files appear under their final names only
    when complete.
    """
    if block_px <= 0 or block_px % TILE_PX:
        raise ConfigError(f"block_px={block_px} must be a positive multiple of {TILE_PX}")
    image_path, labels_path = Path(image_path), Path(labels_path)
    common = {
        "driver": "GTiff",
        "height": spec.height_px,
        "width": spec.width_px,
        "crs": spec.crs,
        "transform": spec.transform,
        "tiled": True,
        "blockxsize": TILE_PX,
        "blockysize": TILE_PX,
        "compress": "deflate",
        "predictor": 2,
    }
    tmp_image, tmp_labels = _partial(image_path), _partial(labels_path)
    try:
        with (
            rasterio.open(
                tmp_image, "w", count=4, dtype="uint16", nodata=IMAGE_NODATA, **common
            ) as img_dst,
            rasterio.open(
                tmp_labels, "w", count=1, dtype="uint8", nodata=CLASS_NODATA, **common
            ) as lab_dst,
        ):
            img_dst.descriptions = BAND_NAMES
            lab_dst.set_band_description(1, "land cover")
            lab_dst.write_colormap(1, colormap(SYNTHETIC_CLASSES))
            lab_dst.update_tags(**classes_tags(SYNTHETIC_CLASSES))
            for row in range(0, spec.height_px, block_px):
                h = min(block_px, spec.height_px - row)
                for col in range(0, spec.width_px, block_px):
                    w = min(block_px, spec.width_px - col)
                    image, labels = render(spec, row, col, h, w)
                    window = Window(col, row, w, h)
                    img_dst.write(image, window=window)
                    lab_dst.write(labels, 1, window=window)
        tmp_image.replace(image_path)
        tmp_labels.replace(labels_path)
    except OSError as exc:
        raise OutputError(f"cannot write synthetic scene to {image_path.parent}: {exc}") from exc
    finally:
        tmp_image.unlink(missing_ok=True)
        tmp_labels.unlink(missing_ok=True)


# ---------------------------------------------------------------------------------------------
# Area of interest.


def aoi_polygon(spec: LandscapeSpec, seed: int | None = None) -> Polygon:
    """An irregular, non-convex AOI well inside the scene covering 50-70 % of it (scene CRS).

    A star-shaped ring of 12-20 vertices around the scene centre on a rounded-rectangle
    outline, with every other vertex pulled inwards so the polygon is not convex, then scaled
    to a drawn target area.
    """
    rng = _rng(spec.seed if seed is None else seed, 0xA01)
    n = int(rng.integers(12, 21))
    angles = (np.arange(n) + rng.uniform(-0.3, 0.3, n)) * (2 * np.pi / n)
    # Superellipse outline (exponent 6) is close to the scene rectangle.
    c, s = np.cos(angles), np.sin(angles)
    outline = 1.0 / (np.abs(c) ** 6 + np.abs(s) ** 6) ** (1 / 6)
    dents = np.where(np.arange(n) % 2 == 1, rng.uniform(0.68, 0.85, n), rng.uniform(0.95, 1.0, n))
    radius = outline * dents
    half_h, half_w = spec.height_px / 2, spec.width_px / 2
    unit_rows, unit_cols = s * radius, c * radius
    ring = Polygon(zip(unit_cols, unit_rows, strict=True))
    target = float(rng.uniform(0.55, 0.65))
    scale = min(
        math.sqrt(target * 4.0 / ring.area),
        0.9 / float(np.max(np.maximum(np.abs(unit_rows), np.abs(unit_cols)))),
    )
    cols_px = half_w + scale * half_w * unit_cols
    rows_px = half_h + scale * half_h * unit_rows
    xs, ys = spec.transform @ (cols_px, rows_px)
    return orient(Polygon(zip(xs, ys, strict=True)), sign=1.0)


def write_aoi_geojson(polygon: Polygon, src_crs: str | CRS, path: str | Path) -> None:
    """Write the polygon as an RFC 7946 GeoJSON FeatureCollection in EPSG:4326 (lon, lat)."""
    transformer = Transformer.from_crs(CRS.from_user_input(src_crs), "EPSG:4326", always_xy=True)
    lonlat = orient(shapely.transform(polygon, transformer.transform, interleaved=False), sign=1.0)
    collection = {
        "type": "FeatureCollection",
        "features": [
            {
                "type": "Feature",
                "properties": {"name": "synthetic AOI"},
                "geometry": mapping(lonlat),
            }
        ],
    }
    path = Path(path)
    try:
        path.write_text(json.dumps(collection, indent=1))
    except OSError as exc:
        raise OutputError(f"cannot write AOI to {path}: {exc}") from exc


# ---------------------------------------------------------------------------------------------
# A scene on disk.


@dataclass(frozen=True)
class SyntheticScene:
    """Paths of a written synthetic scene and the spec it was drawn from."""

    image_path: Path
    labels_path: Path
    aoi_path: Path
    spec: LandscapeSpec


def write_synthetic_scene(
    out_dir: str | Path, size_px: int | tuple[int, int], seed: int, **spec_options: object
) -> SyntheticScene:
    """Write out_dir/scene.tif, labels.tif and aoi.geojson for a seeded synthetic scene."""
    out_dir = Path(out_dir)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot create output folder {out_dir}: {exc}") from exc
    height, width = _size_pair(size_px)
    spec = make_spec(height, width, seed, **spec_options)  # type: ignore[arg-type]
    scene = SyntheticScene(
        out_dir / "scene.tif", out_dir / "labels.tif", out_dir / "aoi.geojson", spec
    )
    write_scene(spec, scene.image_path, scene.labels_path)
    write_aoi_geojson(aoi_polygon(spec), spec.crs, scene.aoi_path)
    return scene
