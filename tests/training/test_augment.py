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
