"""Tile geometry: how a pixel window of a scene is covered by overlapping model-sized tiles.

A `TileGrid` is built from the AOI's window in scene pixels, the scene's shape, the tile size
and the overlap. It is pure (no I/O) and the only place where tile index math lives:

- tiles cover the window completely; along each axis the starts are spread evenly so that
  neighbouring tiles overlap by at least ``overlap_px`` and the last tile ends exactly at the
  (context-extended) window edge: edge tiles are shifted inward, never padded;
- the window is first widened by ``context_px`` on each side (clamped to the scene) so pixels on
  the AOI boundary are predicted with real image context, not with tile-edge effects;
- a window narrower than a tile gets one tile centred on it, as far as the scene allows;
- only a scene smaller than a tile along an axis is padded (bottom/right) to the tile size.

Every tile knows its read window (scene pixels), its padding, and its output window (the part of
the read window inside the AOI window).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field

from rasterio.windows import Window

from geoseg.errors import ConfigError, option
from geoseg.geo.window import PixelWindow


@dataclass(frozen=True)
class Tile:
    """One tile of a grid: what to read, how much to pad, and where its prediction goes."""

    row: int
    col: int
    read: PixelWindow
    """Scene pixels read for this tile (tile-sized unless the scene is smaller than a tile)."""
    pad_bottom: int
    pad_right: int
    out: PixelWindow
    """Scene pixels this tile contributes to: ``read`` intersected with the AOI window."""

    @property
    def out_in_tile(self) -> tuple[slice, slice]:
        """Slices selecting ``out`` inside the (padded) tile array."""
        return self.out.relative_to(self.read)


def axis_starts(
    win_off: int, win_len: int, scene_len: int, *, tile_px: int, overlap_px: int, context_px: int
) -> tuple[tuple[int, ...], int]:
    """Tile starts along one axis and the length read per tile.

    The covered span is the window widened by ``context_px`` and clamped to ``[0, scene_len)``.
    With span length L > tile t and minimum overlap o, the count is
    ``n = ceil((L - t) / (t - o)) + 1`` and start k is ``span_off + round(k * (L - t) / (n - 1))``,
    so the last tile ends exactly at the span end. A span shorter than a tile gets one tile
    centred on it, clamped into the scene; a scene shorter than a tile gets one padded tile.
    """
    if scene_len <= tile_px:
        return (0,), scene_len
    span_off = max(0, win_off - context_px)
    span_end = min(scene_len, win_off + win_len + context_px)
    span_len = span_end - span_off
    if span_len <= tile_px:
        centred = span_off + span_len // 2 - tile_px // 2
        return (min(max(centred, 0), scene_len - tile_px),), tile_px
    stride = tile_px - overlap_px
    n = math.ceil((span_len - tile_px) / stride) + 1
    step = (span_len - tile_px) / (n - 1)
    return tuple(span_off + round(k * step) for k in range(n)), tile_px


@dataclass(frozen=True)
class TileGrid:
    """Overlapping tiles covering ``window`` of a scene of ``scene_shape`` (height, width)."""

    window: PixelWindow
    scene_shape: tuple[int, int]
    tile_px: int
    overlap_px: int
    context_px: int
    row_starts: tuple[int, ...] = field(repr=False)
    col_starts: tuple[int, ...] = field(repr=False)
    read_height: int = field(repr=False)
    read_width: int = field(repr=False)

    @classmethod
    def build(
        cls,
        window: PixelWindow,
        scene_shape: tuple[int, int],
        tile_px: int,
        overlap_px: int,
        context_px: int | None = None,
    ) -> TileGrid:
        """Lay out the tiles; ``context_px`` defaults to half the overlap."""
        _check_params(window, scene_shape, tile_px, overlap_px)
        context = overlap_px // 2 if context_px is None else context_px
        if context < 0:
            raise ConfigError(f"context must be >= 0 px, got {context}")
        along = {"tile_px": tile_px, "overlap_px": overlap_px, "context_px": context}
        rows, read_h = axis_starts(window.row_off, window.height, scene_shape[0], **along)
        cols, read_w = axis_starts(window.col_off, window.width, scene_shape[1], **along)
        return cls(window, scene_shape, tile_px, overlap_px, context, rows, cols, read_h, read_w)

    @property
    def shape(self) -> tuple[int, int]:
        """(tile rows, tile cols)."""
        return (len(self.row_starts), len(self.col_starts))

    def __len__(self) -> int:
        return len(self.row_starts) * len(self.col_starts)

    def tile(self, row: int, col: int) -> Tile:
        """The tile at grid position (row, col)."""
        read = PixelWindow(
            self.row_starts[row], self.col_starts[col], self.read_height, self.read_width
        )
        out = read.intersection(self.window)
        if out is None:  # cannot happen for a valid grid; guards against future edits
            raise RuntimeError(f"tile {row},{col} does not touch the window {self.window}")
        return Tile(
            row=row,
            col=col,
            read=read,
            pad_bottom=self.tile_px - self.read_height,
            pad_right=self.tile_px - self.read_width,
            out=out,
        )

    def __iter__(self) -> Iterator[Tile]:
        """Tiles in row-major order, which the streaming row-band accumulator relies on."""
        for r in range(len(self.row_starts)):
            for c in range(len(self.col_starts)):
                yield self.tile(r, c)

    def rows_final_before(self, tile_row: int) -> int:
        """Scene row up to which the output is final once tile rows < ``tile_row`` are blended.

        No tile of row ``tile_row`` or later reaches above its start, so every scene row
        before it is complete. Past the last tile row, the whole window is final.
        """
        if tile_row >= len(self.row_starts):
            return self.window.row_end
        return min(max(self.row_starts[tile_row], self.window.row_off), self.window.row_end)


def stride_starts(begin: int, end: int, tile_px: int, stride_px: int) -> list[int]:
    """Tile starts from ``begin`` every ``stride_px``, the last one shifted to end at ``end``.

    The training tile candidates' layout: a fixed stride (``begin + k * stride``, the last
    start clamped to ``end - tile_px``, duplicates dropped), unlike `axis_starts`, which
    spreads a prediction grid's starts evenly so that every overlap is at least the minimum.
    """
    if end - begin <= tile_px:
        return [begin]
    n = math.ceil((end - begin - tile_px) / stride_px) + 1
    return sorted({min(begin + k * stride_px, end - tile_px) for k in range(n)})


@dataclass(frozen=True)
class Block:
    """One block of a `BlockGrid`: its pixel window and which of its edges are seams.

    A seam is an edge shared with another block; the raster's own outline is not one.
    """

    index: int
    grid_row: int
    grid_col: int
    row_off: int
    col_off: int
    height: int
    width: int
    seam_top: bool
    seam_bottom: bool
    seam_left: bool
    seam_right: bool

    @property
    def window(self) -> Window:
        return Window(self.col_off, self.row_off, self.width, self.height)

    @property
    def pixels(self) -> PixelWindow:
        return PixelWindow(self.row_off, self.col_off, self.height, self.width)


@dataclass(frozen=True)
class BlockGrid:
    """A raster of ``height_px`` x ``width_px`` cut into ``block_px`` squares, row-major.

    The last row and column of blocks are smaller when ``block_px`` does not divide the size.
    ``row_off``/``col_off`` place the grid inside a larger one (a training region of a scene):
    block windows are then in the larger grid's pixels. The one block partitioner of geoseg:
    vectorize blocks, training/validation split blocks and evaluation chunks.
    """

    height_px: int
    width_px: int
    block_px: int
    row_off: int = 0
    col_off: int = 0

    @classmethod
    def covering(cls, region: PixelWindow, block_px: int) -> BlockGrid:
        """The blocks of ``block_px`` covering ``region`` (in the region's own pixels)."""
        return cls(region.height, region.width, block_px, region.row_off, region.col_off)

    def __post_init__(self) -> None:
        if min(self.height_px, self.width_px, self.block_px) < 1:
            raise ConfigError(f"block grid: sizes must be positive, got {self}")

    @property
    def n_rows(self) -> int:
        return -(-self.height_px // self.block_px)

    @property
    def n_cols(self) -> int:
        return -(-self.width_px // self.block_px)

    def __len__(self) -> int:
        return self.n_rows * self.n_cols

    def block(self, grid_row: int, grid_col: int) -> Block:
        row_off, col_off = grid_row * self.block_px, grid_col * self.block_px
        return Block(
            index=grid_row * self.n_cols + grid_col,
            grid_row=grid_row,
            grid_col=grid_col,
            row_off=self.row_off + row_off,
            col_off=self.col_off + col_off,
            height=min(self.block_px, self.height_px - row_off),
            width=min(self.block_px, self.width_px - col_off),
            seam_top=grid_row > 0,
            seam_bottom=grid_row < self.n_rows - 1,
            seam_left=grid_col > 0,
            seam_right=grid_col < self.n_cols - 1,
        )

    def blocks(self) -> list[Block]:
        return [self.block(r, c) for r in range(self.n_rows) for c in range(self.n_cols)]

    def windows(self) -> list[PixelWindow]:
        """The blocks' pixel windows, row-major."""
        return [b.pixels for b in self.blocks()]


def check_tile_overlap(tile_px: int, overlap_px: int) -> None:
    """Refuse tile sizes below 16 px and overlaps outside 0..tile/2 (tiles must advance).

    Called before a run writes anything, so a bad pair of options fails with no output.
    """
    if tile_px < 16:
        raise ConfigError(f"{option('tile_size')} must be at least 16 px, got {tile_px}")
    if overlap_px < 0:
        raise ConfigError(
            f"{option('overlap')} must be between 0 and half the tile size, got {overlap_px}"
        )
    if overlap_px > tile_px // 2:
        tile, overlap = option("tile_size"), option("overlap")
        raise ConfigError(
            f"{tile} {tile_px} is too small for {overlap} {overlap_px}: the overlap must be "
            f"at most half the tile size ({tile_px // 2} px); lower {overlap} or raise {tile}"
        )


def _check_params(
    window: PixelWindow, scene_shape: tuple[int, int], tile_px: int, overlap_px: int
) -> None:
    check_tile_overlap(tile_px, overlap_px)
    if window.height == 0 or window.width == 0:
        raise ConfigError(f"the window to tile is empty: {window}")
    scene = PixelWindow(0, 0, *scene_shape)
    if scene.intersection(window) != window:
        raise ConfigError(f"window {window} is not inside the scene of shape {scene_shape}")
