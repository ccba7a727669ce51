"""Which torch device a run uses: ``auto`` picks CUDA when present.

Shared by prediction, evaluation and training, so every command accepts and refuses the same
``--device`` values with the same messages.
"""

from __future__ import annotations

import torch

from geoseg.errors import ConfigError, option


def resolve_device(name: str) -> torch.device:
    """``auto`` picks CUDA when present; asking for CUDA without one is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        device = option("device")
        raise ConfigError(f"{device} cuda: no CUDA device is available here; use {device} cpu")
    if name != "cpu" and not name.startswith("cuda"):
        raise ConfigError(f"{option('device')} {name!r}: use auto, cpu or cuda")
    return torch.device(name)
