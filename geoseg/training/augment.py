"""Joint augmentation of image and label tiles: flips/rotations, scale, elastic deformation,
blur, haze and colour jitter.

The image and its labels get the same geometric transform (one of the 8 dihedral ones, a small
rescale, an optional elastic warp; labels always by nearest neighbour, so no label value is
invented); blur, haze, brightness and contrast touch the image only. Blur and haze stand in for
what differs between parts of one aerial mosaic: focus, resampling and atmospheric haze.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class Augmentation:
    """Joint augmentation of an image tile and its labels (training only).

    One of the 8 flips/rotations; a scale factor in ``1 ± scale_jitter`` (a window that much
    larger/smaller is read and resized to the tile: bilinear image, nearest labels); per band
    ``x * c + b`` on valid pixels with ``c`` in ``1 ± contrast`` and ``b`` in ``± brightness``
    (normalized units, i.e. standard deviations). With ``elastic_px`` > 0, an elastic warp
    as in the U-Net paper (Ronneberger et al. 2015): displacements drawn on a coarse
    ``elastic_grid`` x ``elastic_grid`` grid with that standard deviation in pixels, bicubic
    in between. With ``blur_px`` > 0, half of the tiles are blurred by a Gaussian of a
    standard deviation drawn in ``0..blur_px``; with ``haze`` > 0, half are hazed: blended
    with a bright, grey airlight (`HAZE_AIRLIGHT` standard deviations above every band's mean)
    by a weight drawn in ``0..haze``, the atmospheric scattering model ``J t + A (1 - t)``.
    """

    dihedral: bool = True
    scale_jitter: float = 0.1
    brightness: float = 0.1
    contrast: float = 0.1
    elastic_px: float = 0.0
    elastic_grid: int = 3
    blur_px: float = 0.0
    haze: float = 0.0

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
        if self.elastic_px > 0:
            field = coarse_displacements(tile_px, self.elastic_grid, self.elastic_px, rng)
            x, y = warp_pair(x, y, field)
        if self.dihedral:
            k = int(rng.integers(4))
            x, y = np.rot90(x, k, axes=(1, 2)), np.rot90(y, k)
            if rng.integers(2):
                x, y = x[:, :, ::-1], y[:, ::-1]
        x = np.ascontiguousarray(x, dtype=np.float32)
        valid = np.any(x != 0, axis=0)
        if self.blur_px > 0 and rng.integers(2):
            x = gaussian_blur(x, float(rng.uniform(0, self.blur_px))) * valid
        if self.haze > 0 and rng.integers(2):
            weight = np.float32(rng.uniform(0, self.haze))
            x = (x * (1 - weight) + weight * HAZE_AIRLIGHT) * valid
        if self.brightness > 0 or self.contrast > 0:
            n = x.shape[0]
            c = rng.uniform(1 - self.contrast, 1 + self.contrast, n).astype(np.float32)
            b = rng.uniform(-self.brightness, self.brightness, n).astype(np.float32)
            x = (x * c[:, None, None] + b[:, None, None]) * valid
        return x.astype(np.float32, copy=False), np.ascontiguousarray(y)


HAZE_AIRLIGHT = np.float32(1.5)
"""The haze colour in normalized units: 1.5 standard deviations above each band's mean, a
bright grey in any band set (the same offset in every band)."""


def gaussian_blur(x: np.ndarray, sigma_px: float) -> np.ndarray:
    """(bands, h, w) blurred by a separable Gaussian of ``sigma_px``, reflected at the edges."""
    radius = int(3 * sigma_px)  # 2 to 3 standard deviations; none under a third of a px
    if radius < 1:
        return x
    taps = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma_px) ** 2).astype(np.float32)
    kernel = torch.from_numpy(taps / taps.sum())
    n = x.shape[0]
    t = torch.from_numpy(np.ascontiguousarray(x))[None]
    t = F.pad(t, (radius, radius, radius, radius), mode="reflect")
    t = F.conv2d(t, kernel.view(1, 1, 1, -1).expand(n, 1, 1, -1).contiguous(), groups=n)
    t = F.conv2d(t, kernel.view(1, 1, -1, 1).expand(n, 1, -1, 1).contiguous(), groups=n)
    return t[0].numpy()


def resize_pair(x: np.ndarray, y: np.ndarray, size_px: int) -> tuple[np.ndarray, np.ndarray]:
    """Resize an image (bilinear) and its labels (nearest) to ``size_px`` square."""
    xt = torch.from_numpy(np.ascontiguousarray(x))[None]
    yt = torch.from_numpy(np.ascontiguousarray(y))[None, None].float()
    xr = F.interpolate(xt, size=(size_px, size_px), mode="bilinear", align_corners=False)
    yr = F.interpolate(yt, size=(size_px, size_px), mode="nearest")
    return xr[0].numpy(), yr[0, 0].numpy().astype(y.dtype)


def coarse_displacements(
    size_px: int, grid: int, std_px: float, rng: np.random.Generator
) -> np.ndarray:
    """(2, size, size) per-pixel (dx, dy) in pixels: ``grid`` x ``grid`` Gaussian vectors of
    ``std_px`` standard deviation, interpolated bicubically over the tile."""
    coarse = rng.normal(0.0, std_px, (1, 2, grid, grid)).astype(np.float32)
    dense = F.interpolate(
        torch.from_numpy(coarse), size=(size_px, size_px), mode="bicubic", align_corners=True
    )
    return dense[0].numpy()


def warp_pair(x: np.ndarray, y: np.ndarray, field: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sample image (bilinear) and labels (nearest) at ``pixel + field``; reflected at edges.

    ``x`` (bands, h, w), ``y`` (h, w), ``field`` (2, h, w) displacements in pixels (dx, dy).
    """
    h, w = y.shape
    rows, cols = torch.meshgrid(
        torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32), indexing="ij"
    )
    d = torch.from_numpy(np.ascontiguousarray(field))
    # grid_sample's coordinates: -1..1 over the pixel centres (align_corners=True)
    gx = (cols + d[0]) * (2 / max(w - 1, 1)) - 1
    gy = (rows + d[1]) * (2 / max(h - 1, 1)) - 1
    grid = torch.stack((gx, gy), dim=-1)[None]
    xt = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))[None]
    yt = torch.from_numpy(np.ascontiguousarray(y))[None, None].float()
    sample = {"padding_mode": "reflection", "align_corners": True}
    xw = F.grid_sample(xt, grid, mode="bilinear", **sample)
    yw = F.grid_sample(yt, grid, mode="nearest", **sample)
    return xw[0].numpy(), yw[0, 0].numpy().astype(y.dtype)
