"""How scene inputs become model input, as chosen by the user (plain data, no torch)."""

from __future__ import annotations

from dataclasses import dataclass, field

from geoseg.sources.masks import CloudMaskSpec


@dataclass(frozen=True)
class SourceOptions:
    """The cloud mask to apply and whether scenes at another pixel size are resampled."""

    cloud_mask: CloudMaskSpec = field(default_factory=CloudMaskSpec)
    resample: bool = True
