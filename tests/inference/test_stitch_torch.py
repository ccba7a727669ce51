"""The torch row band and class/confidence on CPU tensors: the numpy results, bit for bit."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from geoseg.geo.grid import TileGrid
from geoseg.geo.window import PixelWindow
from geoseg.inference.stitch import (
    BlendKind,
    RowBandAccumulator,
    blend_weights,
    classes_and_confidence,
)
from geoseg.inference.stitch_torch import TorchRowBandAccumulator, classes_and_confidence_torch


def release_all(chunks) -> list[tuple[int, np.ndarray, np.ndarray]]:
    """Finished chunks as (row_off, probs, valid) numpy arrays, torch or numpy alike."""
    out = []
    for c in chunks:
        probs, valid = c.probs, c.valid
        if not isinstance(probs, np.ndarray):
            probs, valid = probs.cpu().numpy(), valid.cpu().numpy()
        out.append((c.row_off, probs.copy(), valid.copy()))
    return out


@pytest.mark.parametrize(
    ("tile", "overlap", "kind"),
    [
        (64, 16, BlendKind.HANN),
        (48, 0, BlendKind.HANN),
        (32, 12, BlendKind.FLAT),
        (80, 24, BlendKind.HANN),
    ],
)
def test_torch_accumulator_releases_the_same_rows_as_the_numpy_one(
    tile: int, overlap: int, kind: BlendKind
) -> None:
    """Random tile probabilities, random valid masks, skipped tiles (some whole tile rows):
    the torch band on CPU tensors gives the numpy band's chunks, bit for bit (same float32
    operations in the same order)."""
    rng = np.random.default_rng(tile + overlap)
    window = PixelWindow(11, 5, 333, 197)
    grid = TileGrid.build(window, (400, 210), tile_px=tile, overlap_px=overlap)
    weights = blend_weights(tile, kind)
    ref = RowBandAccumulator(window, 4, tile, weights)
    acc = TorchRowBandAccumulator(window, 4, tile, weights)
    skipped_rows = {1, 2} if grid.shape[0] > 4 else set()
    got, expected = [], []
    current = 0
    added = 0
    for t in grid:
        if t.row != current:
            until = grid.rows_final_before(t.row)
            expected += release_all(ref.release(until))
            got += release_all(acc.release(until))
            current = t.row
        if t.row in skipped_rows or rng.random() < 0.2:
            continue  # skipped tile: nothing added
        probs = rng.dirichlet(np.ones(4), size=(tile, tile)).transpose(2, 0, 1)
        probs = probs.astype(np.float32)
        valid = rng.random((tile, tile)) > 0.1
        ref.add(t, probs, valid)
        acc.add(t, torch.from_numpy(probs), torch.from_numpy(valid))
        added += 1
    expected += release_all(ref.release(window.row_end))
    got += release_all(acc.release(window.row_end))
    assert added > 0 and acc.top == ref.top == window.row_end
    assert [g[0] for g in got] == [e[0] for e in expected]
    for (_, gp, gv), (_, ep, ev) in zip(got, expected, strict=True):
        np.testing.assert_array_equal(gv, ev)
        np.testing.assert_array_equal(gp, ep)
    assert any(not e[2].all() for e in expected)  # invalid and empty rows were exercised


def test_classes_and_confidence_torch_equals_numpy() -> None:
    rng = np.random.default_rng(5)
    probs = rng.dirichlet(np.ones(5), size=(40, 50)).transpose(2, 0, 1).astype(np.float32)
    probs[:, 0, :5] = 0.2  # ties: both take the first class
    probs[:, 1, :4] = 0.1
    probs[0, 1, :2] = 0.125  # 12.5 % and 37.5 %: both round half to even (12, 38)
    probs[0, 1, 2:4] = 0.375
    valid = rng.random((40, 50)) > 0.2
    valid[:2, :5] = True
    class_ids = np.array([1, 2, 5, 7, 9])
    cls, conf = classes_and_confidence(probs, valid, class_ids)
    cls_t, conf_t = classes_and_confidence_torch(
        torch.from_numpy(probs),
        torch.from_numpy(valid),
        torch.from_numpy(class_ids.astype(np.uint8)),
    )
    assert cls_t.dtype == conf_t.dtype == torch.uint8
    np.testing.assert_array_equal(cls_t.numpy(), cls)
    np.testing.assert_array_equal(conf_t.numpy(), conf)
    assert conf[1, :4].tolist() == [12, 12, 38, 38]
    assert (cls[0, :5] == 1).all()
