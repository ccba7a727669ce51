"""Joint augmentation of image and label tiles: flips/rotations, scale and colour jitter.

The image and its labels get the same geometric transform (one of the 8 dihedral ones, a small
rescale with nearest-neighbour labels); brightness and contrast jitter touch the image only.
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
