"""Run settings: plain data shared by `geoseg run` and the flow, loaded without torch."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from geoseg.config import RunOptions, RunSettings, vectorize_options
from tests.support.cli import REPO


def test_loading_the_settings_imports_no_torch() -> None:
    code = "import sys, geoseg.config; print('torch' in sys.modules)"
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO
    )
    assert proc.stdout.strip() == "False"


def test_run_settings_are_the_shared_options_plus_inputs_and_outputs() -> None:
    own = set(RunSettings.model_fields) - set(RunOptions.model_fields)
    assert own == {
        "aoi",
        "aoi_layer",
        "scenes",
        "stac",
        "newest",
        "models",
        "out",
        "workers",
        "dask_address",
    }
    settings = RunSettings(
        aoi=Path("a.geojson"), scenes=[Path("s.tif")], models=[Path("m.geoseg")], tile_size=256
    )
    options = settings.run_options()
    assert set(options) == set(RunOptions.model_fields) and options["tile_size"] == 256
    assert RunSettings(aoi=settings.aoi, scenes=settings.scenes, models=settings.models,
                       **options) == settings  # fmt: skip


def test_flow_settings_derive_from_the_run_options() -> None:
    pytest.importorskip("prefect", reason="Prefect is not installed: pip install 'geoseg[flows]'")
    from flows.segment import SegmentSettings

    assert issubclass(SegmentSettings, RunOptions)
    flow = SegmentSettings(tile_size=128, tta=True, dask_workers=3)
    assert RunOptions(**flow.run_options()) == RunOptions(tile_size=128, tta=True)
    with pytest.raises(ValidationError, match="extra"):
        SegmentSettings(tile_sise=128)  # a typo in a flow parameter is refused


def test_vectorize_options_follow_the_settings() -> None:
    settings = RunSettings(
        aoi=Path("a"), scenes=[Path("s")], models=[Path("m")], block_size=512, workers=0,
        min_area=100.0, simplify=2.5,
    )  # fmt: skip
    options = vectorize_options(settings)
    assert (options.block_size_px, options.workers, options.min_area_m2, options.simplify_m) == (
        512, 0, 100.0, 2.5,
    )  # fmt: skip
    assert not options.uses_dask
