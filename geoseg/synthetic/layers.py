"""The painted layers of a synthetic scene, bottom to top, and the sensor noise and nodata mask.

Each `paint_*` function draws its layer into a float32 image and a label array for one chunk of
pixels (absolute row and column indices), from the spec and integer-hash noise only.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from geoseg.synthetic.geometry import near, polyline_distance, sub_window
from geoseg.synthetic.noise import fbm, hash2, mix, pixel_hash, salt, unit, value_noise
from geoseg.synthetic.spec import (
    BUILT_UP,
    CROPLAND,
    FOREST,
    GRASSLAND,
    WATER,
    FieldGrid,
    LandscapeSpec,
)

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

_TOWN_TAGS = 1 << 24
_LAKE_TAGS = 2 << 24
"""Noise-field tags of the k-th town / lake start here, clear of the fixed tags below 100."""


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


def paint_fields(
    spec: LandscapeSpec, rows: np.ndarray, cols: np.ndarray, img: np.ndarray, labels: np.ndarray
) -> None:
    """Base layer: cropland and grassland parcels with per-field spectra, rows and boundaries."""
    grid, seed = spec.fields, spec.seed
    u, v = _rotated(grid, rows, cols)
    strip = np.floor(v / grid.strip_px)
    h_strip = hash2(strip.astype(np.int64), 0, salt(seed, 11))
    field_px = grid.min_field_px + (grid.max_field_px - grid.min_field_px) * unit(h_strip, 0)
    shifted = u + unit(h_strip, 16).astype(np.float64) * field_px
    col_idx = np.floor(shifted / field_px)
    fu = shifted / field_px - col_idx
    fv = v / grid.strip_px - strip
    h_field = hash2(strip.astype(np.int64), col_idx.astype(np.int64), salt(seed, 12))
    split = unit(h_field, 48, 8) < 0.3
    sub = split & (fv >= 0.5)
    h_field = np.where(sub, mix(h_field), h_field)
    fv = np.where(split, np.where(sub, fv - 0.5, fv) * 2.0, fv)
    strip_h = np.where(split, grid.strip_px / 2, grid.strip_px)

    is_grass = unit(h_field, 0, 8) < _GRASS_FIELD_SHARE
    crop_type = (unit(h_field, 8, 8) * len(_CROPS)).astype(np.intp)
    crops = _table(_CROPS)[:, crop_type]
    dryness = unit(h_field, 24, 8) ** 2  # most meadows green, a few dry or mown
    grass = _spectrum(_GRASS) + (_spectrum(_DRY_GRASS) - _spectrum(_GRASS)) * dryness
    base = np.where(is_grass, grass, crops)
    brightness = np.float32(0.88) + np.float32(0.24) * unit(h_field, 32, 8)
    nir_gain = np.float32(0.9) + np.float32(0.2) * unit(h_field, 40, 8)
    img[:] = base * brightness
    img[3] *= nir_gain

    # Crop rows: a triangle wave across the field, along u or v per field.
    period = np.float32(2.5) + np.float32(3.0) * unit(h_field, 56, 8)
    along = np.where(unit(h_field, 16, 8) < 0.5, u, v).astype(np.float32) / period
    rows_wave = np.abs(along - np.floor(along) - np.float32(0.5)) - np.float32(0.25)
    texture = np.float32(0.05) * (value_noise(rows, cols, 7.0, salt(seed, 13)) - np.float32(0.5))
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


def paint_forest(
    seed: int, rows: np.ndarray, cols: np.ndarray, img: np.ndarray, labels: np.ndarray
) -> None:
    """Forest patches where low-frequency noise exceeds a threshold; canopy texture inside."""
    density = fbm(rows, cols, _FOREST_CELL_PX, seed=seed, tag=20, octaves=4)
    alpha = np.clip(
        np.float32(0.5) + (density - np.float32(_FOREST_THRESHOLD)) / np.float32(_FOREST_EDGE), 0, 1
    )
    conifer = value_noise(rows, cols, 150.0, salt(seed, 30))
    forest = (
        _spectrum(_FOREST_DECIDUOUS)
        + (_spectrum(_FOREST_CONIFER) - _spectrum(_FOREST_DECIDUOUS)) * conifer
    )
    crowns = value_noise(rows, cols, 2.3, salt(seed, 31)) - np.float32(0.5)
    shade = value_noise(rows, cols, 9.0, salt(seed, 32)) - np.float32(0.5)
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


def paint_towns(
    spec: LandscapeSpec, rows: np.ndarray, cols: np.ndarray, img: np.ndarray, labels: np.ndarray
) -> None:
    """Towns: whole street blocks near a town centre become built-up (some become parks)."""
    grid, seed = spec.fields, spec.seed
    for k, town in enumerate(spec.towns):
        reach = 1.4 * town.radius_px + 2 * grid.block_px
        sub = sub_window(
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
        h_block = hash2(bu, bv, salt(seed, _TOWN_TAGS + 2 * k))
        inside = dist + 0.5 * (unit(h_block, 0, 16).astype(np.float64) - 0.5) < 1.0
        if not inside.any():
            continue
        park = unit(h_block, 16, 8) < _PARK_SHARE
        roof = _table(_ROOFS)[:, (unit(h_block, 24, 8) * len(_ROOFS)).astype(np.intp)]
        h_px = pixel_hash(rs // 2, cs // 2, salt(seed, _TOWN_TAGS + 2 * k + 1))
        roof = roof * (np.float32(0.8) + np.float32(0.4) * unit(h_px, 0, 8))
        gardens = np.float32(0.3) * unit(h_px, 8, 8) ** 2
        roof = roof + (_spectrum(_GRASS) - roof) * gardens
        street = edge < np.float32(grid.street_px / 2)
        built = np.where(street, _spectrum(_STREET), roof)
        layer = np.where(park & ~street, _spectrum(_GRASS), built)
        target = img[:, r_sl, c_sl]
        target[:] = np.where(inside, layer, target)
        lab = labels[r_sl, c_sl]
        lab[inside] = np.where(park & ~street, GRASSLAND, BUILT_UP)[inside]


def paint_roads(
    spec: LandscapeSpec, rows: np.ndarray, cols: np.ndarray, img: np.ndarray, labels: np.ndarray
) -> None:
    """Asphalt roads with soft (mixed) edges."""
    dist = polyline_distance(spec.roads, rows, cols)
    box = near(dist)
    if box is None:
        return
    r_sl, c_sl = box
    alpha = np.clip(np.float32(0.5) - dist[box].astype(np.float32) / np.float32(0.7), 0, 1)
    _blend(img[:, r_sl, c_sl], _spectrum(_ROAD), alpha)
    labels[box][alpha > 0.5] = BUILT_UP


def paint_river(
    spec: LandscapeSpec, rows: np.ndarray, cols: np.ndarray, img: np.ndarray, labels: np.ndarray
) -> None:
    """Rivers with irregular banks (distance warped by noise) and mixed bank pixels."""
    dist = polyline_distance(spec.rivers, rows, cols)
    box = near(dist)
    if box is None:
        return
    r_sl, c_sl = box
    rs, cs = rows[r_sl], cols[c_sl]
    banks = value_noise(rs, cs, 5.0, salt(spec.seed, 50)) - np.float32(0.5)
    alpha = np.clip(
        np.float32(0.5)
        - (dist[box].astype(np.float32) + np.float32(1.2) * banks) / np.float32(_MIX_EDGE_PX),
        0,
        1,
    )
    turbidity = value_noise(rs, cs, 40.0, salt(spec.seed, 51)) - np.float32(0.5)
    water = _spectrum(_WATER_RIVER) * (np.float32(1.0) + np.float32(0.1) * turbidity)
    _blend(img[:, r_sl, c_sl], water, alpha)
    labels[box][alpha > 0.5] = WATER


def paint_lakes(
    spec: LandscapeSpec, rows: np.ndarray, cols: np.ndarray, img: np.ndarray, labels: np.ndarray
) -> None:
    """Lakes: union of noise-warped discs; colour varies per lake from clear to greenish."""
    for k, lobe in enumerate(spec.lakes):
        reach = 1.5 * lobe.radius_px
        sub = sub_window(
            rows, cols, (lobe.row - reach, lobe.row + reach, lobe.col - reach, lobe.col + reach)
        )
        if sub is None:
            continue
        rs, cs, r_sl, c_sl = sub
        y = (rs.astype(np.float64) + 0.5 - lobe.row)[:, None]
        x = (cs.astype(np.float64) + 0.5 - lobe.col)[None, :]
        q = (np.sqrt(y * y + x * x) / lobe.radius_px).astype(np.float32)
        warp = fbm(
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


def add_sensor_noise(seed: int, rows: np.ndarray, cols: np.ndarray, img: np.ndarray) -> None:
    """Per-pixel, per-band noise: ~3.7 % multiplicative plus ~20 DN additive (triangular)."""
    h_mul = pixel_hash(rows, cols, salt(seed, 70))
    h_add = pixel_hash(rows, cols, salt(seed, 71))
    for b in range(4):
        mul = unit(h_mul, 16 * b, 8) + unit(h_mul, 16 * b + 8, 8) - np.float32(1.0)
        add = unit(h_add, 16 * b, 8) + unit(h_add, 16 * b + 8, 8) - np.float32(1.0)
        img[b] *= np.float32(1.0) + np.float32(0.09) * mul
        img[b] += np.float32(50.0) * add


def nodata_mask(spec: LandscapeSpec, rows: np.ndarray, cols: np.ndarray) -> np.ndarray | None:
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
        wobble = value_noise(along, np.zeros(1, np.int64), 40.0, salt(spec.seed, 80 + k))[:, 0]
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
