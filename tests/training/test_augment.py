"""Joint augmentation of image and label tiles."""

from __future__ import annotations

import numpy as np

from geoseg.training.augment import Augmentation


def test_augmentation_moves_image_and_labels_together() -> None:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 5, (32, 32)).astype(np.uint8)
    x = np.stack([y.astype(np.float32) + 1, -y.astype(np.float32) - 1])
    flips = Augmentation(scale_jitter=0, brightness=0, contrast=0)
    seen = set()
    for _ in range(40):
        xa, ya = flips.apply(x, y, 32, rng)
        assert (xa[0] == ya + 1).all() and (xa[1] == -ya.astype(np.float32) - 1).all()
        seen.add(ya.tobytes())
    assert len(seen) == 8  # all 8 flips/rotations occur
    # scale jitter: a bigger read is resized back to the tile, labels by nearest neighbour
    big_y = np.kron(y, np.ones((2, 2), dtype=np.uint8))
    big_x = np.kron(x, np.ones((1, 2, 2), dtype=np.float32))
    xa, ya = Augmentation(dihedral=False, scale_jitter=0.2, brightness=0, contrast=0).apply(
        big_x, big_y, 32, rng
    )
    assert ya.shape == (32, 32) and (ya == y).all() and np.allclose(xa[0], y + 1)
    # brightness/contrast change values per band but leave labels alone
    xa, ya = Augmentation(dihedral=False, scale_jitter=0, brightness=0.5, contrast=0.5).apply(
        x, y, 32, rng
    )
    assert (ya == y).all() and not np.allclose(xa, x)


def test_warp_pair_moves_image_and_labels_by_the_field() -> None:
    """A zero field is the identity; a whole-pixel field shifts image and labels alike."""
    from geoseg.training.augment import warp_pair

    rng = np.random.default_rng(1)
    y = rng.integers(1, 4, (24, 20)).astype(np.uint8)
    x = np.stack([y * 10.0, rng.normal(size=(24, 20))]).astype(np.float32)
    xw, yw = warp_pair(x, y, np.zeros((2, 24, 20), np.float32))
    np.testing.assert_array_equal(yw, y)
    np.testing.assert_allclose(xw, x, atol=1e-4)
    shift = np.zeros((2, 24, 20), np.float32)
    shift[0], shift[1] = 3, -2  # each pixel samples 3 columns right, 2 rows up
    xw, yw = warp_pair(x, y, shift)
    np.testing.assert_array_equal(yw[2:, :-3], y[:-2, 3:])
    np.testing.assert_allclose(xw[:, 2:, :-3], x[:, :-2, 3:], atol=1e-4)
    assert yw.dtype == y.dtype and xw.dtype == np.float32


def test_elastic_deformation_warps_smoothly_and_invents_no_label() -> None:
    from geoseg.training.augment import coarse_displacements

    rng = np.random.default_rng(2)
    field = coarse_displacements(64, 3, 5.0, np.random.default_rng(3))
    coarse = np.random.default_rng(3).normal(0.0, 5.0, (1, 2, 3, 3)).astype(np.float32)[0]
    assert field.shape == (2, 64, 64)
    np.testing.assert_allclose(field[:, ::63, ::63], coarse[:, ::2, ::2], atol=1e-4)  # corners
    assert np.abs(np.diff(field, axis=2)).max() < 1.0  # smooth: < 1 px change per pixel
    y = np.kron(rng.integers(1, 5, (8, 8)), np.ones((8, 8), dtype=np.int64)).astype(np.uint8)
    y[:4, :4] = 255  # an ignored corner (validation / nodata) stays ignored, never a class
    x = np.stack([y.astype(np.float32)])
    warp = Augmentation(dihedral=False, scale_jitter=0, brightness=0, contrast=0, elastic_px=4)
    changed = 0
    for _ in range(5):
        xa, ya = warp.apply(x, y, 64, rng)
        assert set(np.unique(ya)) <= set(np.unique(y))
        assert xa.shape == (1, 64, 64) and ya.shape == (64, 64)
        changed += int((ya != y).any())
    assert changed == 5


def test_gaussian_blur_keeps_the_mean_and_spreads_a_point() -> None:
    from geoseg.training.augment import gaussian_blur

    x = np.zeros((2, 21, 21), np.float32)
    x[:, 10, 10] = 1.0
    blurred = gaussian_blur(x, 1.5)
    assert blurred.shape == x.shape and blurred.dtype == np.float32
    assert np.isclose(blurred.sum(), x.sum(), atol=1e-5)  # the point is far from the edges
    assert blurred[0, 10, 10] < 0.1 and np.allclose(blurred[0], blurred[0].T, atol=1e-7)
    assert np.isclose(blurred[0, 10, 12] / blurred[0, 10, 10], np.exp(-2 / 1.5**2), rtol=1e-3)
    np.testing.assert_array_equal(gaussian_blur(x, 0.3), x)  # under a third of a pixel: none


def test_blur_and_haze_touch_the_image_only_and_keep_nodata() -> None:
    from geoseg.training.augment import HAZE_AIRLIGHT

    rng = np.random.default_rng(3)
    y = rng.integers(1, 3, (32, 32)).astype(np.uint8)
    x = rng.normal(size=(3, 32, 32)).astype(np.float32)
    x[:, :, :4] = 0.0  # nodata columns stay 0
    plain = Augmentation(dihedral=False, scale_jitter=0, brightness=0, contrast=0)
    hazy = Augmentation(dihedral=False, scale_jitter=0, brightness=0, contrast=0, haze=0.6)
    blurry = Augmentation(dihedral=False, scale_jitter=0, brightness=0, contrast=0, blur_px=3)
    changed = {"haze": 0, "blur": 0}
    for _ in range(20):
        for name, aug in (("haze", hazy), ("blur", blurry)):
            xa, ya = aug.apply(x, y, 32, rng)
            np.testing.assert_array_equal(ya, y)
            assert (xa[:, :, :4] == 0).all()
            if not np.allclose(xa, x):
                changed[name] += 1
                if name == "haze":  # towards the airlight: closer to it everywhere
                    inside = np.abs(xa[:, :, 4:] - HAZE_AIRLIGHT)
                    assert (inside <= np.abs(x[:, :, 4:] - HAZE_AIRLIGHT) + 1e-6).all()
                else:  # blur lowers the variance
                    assert xa[:, 4:, 8:].std() < x[:, 4:, 8:].std()
    assert 4 <= changed["haze"] <= 16 and 4 <= changed["blur"] <= 16  # about half the tiles
    xa, _ = plain.apply(x, y, 32, rng)
    np.testing.assert_array_equal(xa, x)
