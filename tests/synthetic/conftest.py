"""Fixtures of the synthetic-scene tests: one 512 px scene in memory, rendered once."""

from __future__ import annotations

import pytest

from geoseg.synthetic import Landscape, make_landscape


@pytest.fixture(scope="package")
def scene512() -> Landscape:
    return make_landscape(512, seed=7)
