"""Pixel windows: rectangles of scene pixels in (row, col) order, and their text form.

`PixelWindow` is the one way geoseg names a part of a pixel grid; `parse_window` reads the
``rows=a:b,cols=c:d`` text of the ``--window`` options and `format_window` writes it back.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from rasterio.windows import Window

from geoseg.errors import ConfigError, option


@dataclass(frozen=True)
class PixelWindow:
    """A rectangle of pixels: offsets and size in (row, col) order, end exclusive."""

    row_off: int
    col_off: int
    height: int
    width: int

    def __post_init__(self) -> None:
        if self.height < 0 or self.width < 0:
            raise ValueError(f"window size must be >= 0, got {self.height}x{self.width}")

    @property
    def row_end(self) -> int:
        return self.row_off + self.height

    @property
    def col_end(self) -> int:
        return self.col_off + self.width

    @property
    def shape(self) -> tuple[int, int]:
        """(height, width) in pixels."""
        return (self.height, self.width)

    @property
    def size_px(self) -> int:
        return self.height * self.width

    def intersection(self, other: PixelWindow) -> PixelWindow | None:
        """The common part of two windows, or None if they do not overlap."""
        r0, c0 = max(self.row_off, other.row_off), max(self.col_off, other.col_off)
        r1, c1 = min(self.row_end, other.row_end), min(self.col_end, other.col_end)
        if r1 <= r0 or c1 <= c0:
            return None
        return PixelWindow(r0, c0, r1 - r0, c1 - c0)

    def relative_to(self, outer: PixelWindow) -> tuple[slice, slice]:
        """Array slices (rows, cols) selecting this window inside an array covering ``outer``."""
        r, c = self.row_off - outer.row_off, self.col_off - outer.col_off
        return slice(r, r + self.height), slice(c, c + self.width)

    def to_rasterio(self) -> Window:
        """The same window as a ``rasterio.windows.Window``."""
        return Window(self.col_off, self.row_off, self.width, self.height)


_WINDOW_PART = re.compile(r"^(rows|cols)=(-?\d*):(-?\d*)$")


def parse_window(
    text: str | None, shape: tuple[int, int], *, setting: str = "window"
) -> PixelWindow:
    """A pixel window from ``"cols=0:677"``, ``"rows=100:900,cols=677:"`` or None (everything).

    Ranges are Python slices over (row, col) pixel indexes: end exclusive, an empty bound is the
    scene edge, negative bounds count from the end. ``setting`` names the option in errors.
    """
    name = option(setting)
    height, width = shape
    if text is None or not text.strip():
        return PixelWindow(0, 0, height, width)
    bounds = {"rows": (0, height), "cols": (0, width)}
    for part in text.replace(" ", "").split(","):
        match = _WINDOW_PART.match(part)
        if match is None:
            raise ConfigError(
                f"{name} {text!r}: cannot read {part!r}; write e.g. cols=0:677 or "
                "rows=0:1000,cols=677: (pixel ranges, end exclusive)"
            )
        axis, start, stop = match.groups()
        size = height if axis == "rows" else width
        s, e = slice(int(start) if start else None, int(stop) if stop else None).indices(size)[:2]
        if e <= s:
            raise ConfigError(f"{name} {text!r}: {axis} range {start}:{stop} is empty")
        bounds[axis] = (s, e)
    (r0, r1), (c0, c1) = bounds["rows"], bounds["cols"]
    return PixelWindow(r0, c0, r1 - r0, c1 - c0)


def format_window(window: PixelWindow) -> str:
    """The inverse of `parse_window` (``rows=a:b,cols=c:d``)."""
    return f"rows={window.row_off}:{window.row_end},cols={window.col_off}:{window.col_end}"
