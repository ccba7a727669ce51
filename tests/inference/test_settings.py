"""PredictSettings: where blending runs, the reader-thread default; no torch import."""

from __future__ import annotations

import torch

from geoseg.inference.settings import PredictSettings


def test_blend_on_device_defaults_to_cuda_only() -> None:
    settings = PredictSettings(tile_px=64, overlap_px=0, batch_size=1)
    assert settings.blends_on_device(torch.device("cuda")) is True
    assert settings.blends_on_device(torch.device("cpu")) is False
    forced = PredictSettings(tile_px=64, overlap_px=0, batch_size=1, blend_on_device=True)
    assert forced.blends_on_device(torch.device("cpu")) is True


def test_reader_threads_default_follows_the_cpu_count(monkeypatch) -> None:
    import os

    from geoseg.inference import settings as predict_module

    for cores, expected in [(1, 2), (2, 2), (6, 6), (64, 8)]:
        monkeypatch.setattr(
            os, "sched_getaffinity", lambda _pid, n=cores: set(range(n)), raising=False
        )
        assert predict_module.default_reader_threads() == expected
        assert PredictSettings(tile_px=64, overlap_px=0, batch_size=1).reader_threads == expected
    assert (
        PredictSettings(tile_px=64, overlap_px=0, batch_size=1, reader_threads=3).reader_threads
        == 3
    )


def test_settings_do_not_import_torch() -> None:
    """`geoseg.config` imports these settings; loading them must not load torch."""
    import subprocess
    import sys

    code = "import sys, geoseg.inference.settings; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
