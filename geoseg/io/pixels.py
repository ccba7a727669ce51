"""How a scene's pixels become model input: which bands, what unit conversion, which mask.

A `ReadPlan` is plain data resolved once per scene before the run starts (from the model
package, the file's or STAC item's declarations and the cloud-mask choice) and applied to every
tile read: the bands are read, converted into the model's units (``stored * gain + bias``) and
the pixels a mask band flags are removed from the valid mask, exactly like input nodata.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import rasterio

from geoseg.geo.window import PixelWindow
from geoseg.io.raster import read_window


@dataclass(frozen=True)
class BandConversion:
    """A stored value into the model's units: ``stored * gain + bias``."""

    gain: float = 1.0
    bias: float = 0.0

    @property
    def identity(self) -> bool:
        return self.gain == 1.0 and self.bias == 0.0


@dataclass(frozen=True)
class MaskRule:
    """Pixels to drop: the mask band's value is one of ``values`` or has one of ``bits`` set."""

    band: int
    values: tuple[int, ...] = ()
    bits: tuple[int, ...] = ()

    def masked(self, data: np.ndarray) -> np.ndarray:
        """Boolean array: True where ``data`` (the mask band's values) flags the pixel."""
        hit = np.isin(data, self.values) if self.values else np.zeros(data.shape, dtype=bool)
        if self.bits:
            bitmask = sum(1 << b for b in self.bits)
            hit |= (data.astype(np.int64) & bitmask) != 0
        return hit


@dataclass(frozen=True)
class ReadPlan:
    """The bands to read (1-based, in model order), their conversions and an optional mask.

    ``conversions`` empty means every band is used as stored (today's behaviour, bit for bit).
    """

    indexes: tuple[int, ...]
    conversions: tuple[BandConversion, ...] = ()
    mask: MaskRule | None = None

    @classmethod
    def stored(cls, indexes: Sequence[int]) -> ReadPlan:
        """Bands ``indexes`` used as stored, no mask."""
        return cls(tuple(indexes))

    @property
    def converts(self) -> bool:
        return any(not c.identity for c in self.conversions)

    def read(
        self, ds: rasterio.DatasetReader, window: PixelWindow
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """Model input (bands, h, w), its valid mask and the masked pixels (or None).

        The input is float32 when a band is converted, else the stored values in their own
        dtype (uint16: half the bytes to stack and copy; made float32 where it is normalized).
        Masked pixels stay valid input: the model sees them as context, so pixels beside a
        cloud are predicted exactly as without the mask; only the outputs drop them.
        """
        data, valid = read_window(ds, window, self.indexes)
        values = self.convert(data, valid)
        if self.mask is None:
            return values, valid, None
        flags, _ = read_window(ds, window, [self.mask.band])
        return values, valid, self.mask.masked(flags[0]) & valid

    def convert(self, data: np.ndarray, valid: np.ndarray) -> np.ndarray:
        """Stored values into model units (float32); nodata pixels become 0 when converted.

        Zero is what an unconverted scene stores at nodata, so a scene stored with an offset
        gives the model the same input as the unshifted scene, border pixels included. Without
        a conversion the stored array is returned as it is.
        """
        if not self.converts:
            return data
        values = data.astype(np.float32)
        for band, conv in zip(values, self.conversions, strict=True):
            if not conv.identity:
                band *= np.float32(conv.gain)
                band += np.float32(conv.bias)
        values[:, ~valid] = 0.0
        return values
