"""Model test helpers: input sizes that are no multiple of any network's stride."""

from __future__ import annotations

ODD_SIZES = [(250, 333), (31, 17), (1, 1), (64, 97)]
