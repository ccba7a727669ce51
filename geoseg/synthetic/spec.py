"""The plain-data description of a synthetic scene and `make_spec`, which draws one from a seed.

A `LandscapeSpec` holds only small parameters (polylines, discs, the field grid, nodata margins,
georeferencing), drawn with a seeded numpy generator; pixels are never drawn here. Also the
classes and band order every synthetic scene shares.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from affine import Affine
from pyproj import CRS

from geoseg.classes import ClassInfo
from geoseg.errors import ConfigError

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

CAP = 4.0
"""Signed distances are clamped to this many px: beyond it a layer is certainly absent."""
_EDGES = ("top", "bottom", "left", "right")


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
    rng = parameter_rng(seed, 0x5EED)
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


def parameter_rng(seed: int, tag: int) -> np.random.Generator:
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
    pad = max_width + 2 * CAP
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
        p0 = np.array(_edge_point(rng, start_edge, height_px, width_px, 2 * CAP))
        p1 = np.array(_edge_point(rng, end_edge, height_px, width_px, 2 * CAP))
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
