"""Blending weights and the streaming row-band accumulator: no seams, bounded memory."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from geoseg.geo.grid import TileGrid
from geoseg.geo.window import PixelWindow
from geoseg.inference.stitch import (
    BlendKind,
    RowBandAccumulator,
    blend_weights,
    classes_and_confidence,
)


def test_hann_weights_shape_symmetry_and_floor() -> None:
    w = blend_weights(64)
    assert w.shape == (64, 64)
    assert w.dtype == np.float32
    np.testing.assert_allclose(w, w.T)
    np.testing.assert_allclose(w, w[::-1, ::-1])
    assert w.min() >= 1e-3
    assert w.max() == pytest.approx(w[31, 31]) and w.max() > 0.99
    assert np.all(blend_weights(8, BlendKind.FLAT) == 1)


def pointwise_probs(image: np.ndarray) -> np.ndarray:
    """A per-pixel 'model': softmax over 3 linear functions of the pixel value."""
    logits = np.stack([image, 1.0 - image, 0.5 * np.ones_like(image)]) * 4
    e = np.exp(logits - logits.max(axis=0))
    return (e / e.sum(axis=0)).astype(np.float32)


def stitch(image: np.ndarray, window: PixelWindow, tile: int, overlap: int, valid=None):
    """Blend tile predictions of a pointwise model the way predict.py does; whole window out."""
    grid = TileGrid.build(window, image.shape, tile_px=tile, overlap_px=overlap)
    acc = RowBandAccumulator(window, 3, tile, blend_weights(tile))
    out = np.zeros((3, *window.shape), dtype=np.float32)
    out_valid = np.zeros(window.shape, dtype=bool)
    max_band = 0

    def take(chunks) -> None:
        for finished in chunks:
            assert finished.probs.shape[1] <= 64  # released in small chunks
            r = finished.row_off - window.row_off
            out[:, r : r + finished.probs.shape[1]] = finished.probs
            out_valid[r : r + finished.probs.shape[1]] = finished.valid

    current = 0
    for t in grid:
        if t.row != current:
            take(acc.release(grid.rows_final_before(t.row)))
            current = t.row
        x = np.zeros((tile, tile), dtype=np.float32)
        x[: t.read.height, : t.read.width] = image[
            t.read.relative_to(PixelWindow(0, 0, *image.shape))
        ]
        v = np.zeros((tile, tile), dtype=bool)
        v[: t.read.height, : t.read.width] = (
            True if valid is None else valid[t.read.relative_to(PixelWindow(0, 0, *image.shape))]
        )
        acc.add(t, pointwise_probs(x), v)
        max_band = max(max_band, acc._prob_sum.shape[1])
    take(acc.release(window.row_end))
    assert max_band <= tile  # memory: one band of at most a tile's height
    return out, out_valid


@pytest.mark.parametrize(("tile", "overlap"), [(64, 16), (64, 0), (48, 24), (256, 32)])
def test_blending_a_pointwise_model_equals_the_single_pass_result(tile: int, overlap: int) -> None:
    rng = np.random.default_rng(1)
    image = rng.random((300, 233), dtype=np.float32)
    window = PixelWindow(13, 7, 250, 211)
    out, valid = stitch(image, window, tile, overlap)
    expected = pointwise_probs(image)[:, 13:263, 7:218]
    assert valid.all()
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-6)


@settings(max_examples=40, deadline=None)
@given(
    h=st.integers(20, 200),
    w=st.integers(20, 200),
    tile=st.sampled_from([16, 32, 64]),
    overlap_frac=st.floats(0, 0.5),
    seed=st.integers(0, 1000),
)
def test_blending_has_no_seams_for_any_grid(
    h: int, w: int, tile: int, overlap_frac: float, seed: int
) -> None:
    image = np.random.default_rng(seed).random((h, w), dtype=np.float32)
    window = PixelWindow(h // 5, w // 7, h - h // 5, w - w // 7)
    out, _ = stitch(image, window, tile, int(tile // 2 * overlap_frac))
    expected = pointwise_probs(image)[(slice(None), *window.relative_to(PixelWindow(0, 0, h, w)))]
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-6)


def test_input_nodata_is_not_valid_and_gets_no_weight() -> None:
    image = np.random.default_rng(2).random((120, 90), dtype=np.float32)
    valid = np.ones_like(image, dtype=bool)
    valid[:, :10] = False
    valid[50:60, 40:50] = False
    window = PixelWindow(0, 0, 120, 90)
    out, out_valid = stitch(image, window, 32, 8, valid)
    np.testing.assert_array_equal(out_valid, valid)
    np.testing.assert_allclose(out[:, valid], pointwise_probs(image)[:, valid], rtol=1e-5)
    assert np.all(out[:, ~valid] == 0)


@pytest.mark.parametrize("backend", ["numpy", "torch"])
def test_tiles_out_of_order_are_refused(backend: str) -> None:
    window = PixelWindow(0, 0, 200, 64)
    grid = TileGrid.build(window, (200, 64), tile_px=64, overlap_px=0)
    probs = np.ones((1, 64, 64), dtype=np.float32)
    if backend == "torch":
        import torch

        from geoseg.inference.stitch_torch import TorchRowBandAccumulator

        acc = TorchRowBandAccumulator(window, 1, 64, blend_weights(64))
        probs = torch.from_numpy(probs)
    else:
        acc = RowBandAccumulator(window, 1, 64, blend_weights(64))
    list(acc.release(grid.rows_final_before(2)))
    with pytest.raises(RuntimeError, match="out of order"):
        acc.add(grid.tile(0, 0), probs)


def test_classes_and_confidence() -> None:
    probs = np.array([[[0.7, 0.2]], [[0.3, 0.8]]], dtype=np.float32)  # 2 classes, 1x2 pixels
    valid = np.array([[True, False]])
    cls, conf = classes_and_confidence(probs, valid, np.array([3, 9]))
    assert cls.tolist() == [[3, 255]]
    assert conf.tolist() == [[70, 0]]
    assert cls.dtype == np.uint8 and conf.dtype == np.uint8


def test_release_past_the_band_gives_empty_rows_in_chunks() -> None:
    """When whole tile rows are skipped, rows no tile reached come out empty, chunk by chunk."""
    window = PixelWindow(0, 0, 300, 40)
    grid = TileGrid.build(window, (300, 40), tile_px=32, overlap_px=8)
    acc = RowBandAccumulator(window, 2, 32, blend_weights(32))
    first = grid.tile(0, 0)
    acc.add(first, np.ones((2, 32, 32), dtype=np.float32))
    chunks = list(acc.release(window.row_end, chunk_rows=20))
    assert [c.row_off for c in chunks] == sorted(c.row_off for c in chunks)
    assert sum(c.probs.shape[1] for c in chunks) == 300
    assert max(c.probs.shape[1] for c in chunks) <= 20
    valid = np.concatenate([c.valid for c in chunks])
    assert valid[: first.out.row_end, : first.out.col_end].all()
    assert not valid[32:].any()
    assert acc.top == 300
