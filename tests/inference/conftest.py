"""Fixtures of the inference tests: the AOI window of the 512 px scene, the demo predictor."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from geoseg.inference.predictor import Predictor
from geoseg.inference.scene import SceneWindow
from geoseg.models.package import load_package
from tests.support.inference import aoi_target


@pytest.fixture(scope="module")
def target(scene_512) -> SceneWindow:
    return aoi_target(scene_512.image_path, scene_512.aoi_path)


@pytest.fixture
def cpu_predictor(demo_model: Path) -> Predictor:
    """The demo model on the CPU (a fresh one: tests may swap its model)."""
    return Predictor(load_package(demo_model), torch.device("cpu"))
