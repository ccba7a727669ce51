"""Land-cover classes: id, name and display colour, shared by packages, rasters and layers."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from geoseg.errors import ConfigError

CLASS_NODATA = 255
"""Class raster value for 'no prediction' (input nodata or outside the AOI)."""

_HEX_COLOR = re.compile(r"^#[0-9a-fA-F]{6}$")


@dataclass(frozen=True)
class ClassInfo:
    """One output class: raster value ``id`` (0..254), human ``name``, ``color`` as ``#rrggbb``."""

    id: int
    name: str
    color: str

    def __post_init__(self) -> None:
        if not 0 <= self.id < CLASS_NODATA:
            raise ConfigError(
                f"class {self.name!r}: id {self.id} must be in 0..254 (255 is nodata)"
            )
        if not _HEX_COLOR.match(self.color):
            raise ConfigError(f"class {self.name!r}: colour {self.color!r} is not '#rrggbb'")

    @property
    def rgb(self) -> tuple[int, int, int]:
        """The colour as an (r, g, b) tuple of 0..255 ints."""
        return tuple(int(self.color[i : i + 2], 16) for i in (1, 3, 5))  # type: ignore[return-value]


def validate_classes(classes: Sequence[ClassInfo]) -> tuple[ClassInfo, ...]:
    """Return the classes as a tuple, refusing duplicate ids or names."""
    ids = [c.id for c in classes]
    names = [c.name for c in classes]
    if not classes:
        raise ConfigError("the class list is empty: give at least one class")
    if len(set(ids)) != len(ids):
        raise ConfigError(f"class ids must be unique, got {ids}")
    if len(set(names)) != len(names):
        raise ConfigError(f"class names must be unique, got {names}")
    return tuple(classes)


def colormap(classes: Sequence[ClassInfo]) -> dict[int, tuple[int, int, int, int]]:
    """GDAL colour table for a class raster: class colours, nodata transparent."""
    table = {c.id: (*c.rgb, 255) for c in classes}
    table[CLASS_NODATA] = (0, 0, 0, 0)
    return table
