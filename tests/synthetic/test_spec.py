"""Tests for geoseg.synthetic.spec: option checks and a small, frozen, reproducible spec."""

from __future__ import annotations

import pytest

from geoseg.errors import ConfigError
from geoseg.synthetic import make_spec


@pytest.mark.parametrize(
    ("args", "kwargs"),
    [
        ((15, 64, 0), {}),
        ((64, 8, 0), {}),
        ((64, 64, 0), {"nodata_margin_px": 40}),
        ((64, 64, 0), {"res_m": 0}),
        ((64, 64, 0), {"epsg": 999999}),
        ((64, 64, 0), {"epsg": 4326}),
    ],
)
def test_invalid_spec_options_raise_config_error(args: tuple, kwargs: dict) -> None:
    with pytest.raises(ConfigError):
        make_spec(*args, **kwargs)


def test_spec_is_small_and_frozen() -> None:
    spec = make_spec(4000, 4000, seed=1)
    assert len(repr(spec)) < 200_000
    with pytest.raises(AttributeError):
        spec.seed = 2  # type: ignore[misc]
    assert spec == make_spec(4000, 4000, seed=1)
