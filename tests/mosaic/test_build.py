"""The mosaic's pure helpers: scene dates for --prefer newest, inputs it refuses."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from geoseg.errors import ConfigError
from geoseg.mosaic.build import MosaicSource, check_mosaic_inputs, date_ranks
from geoseg.synthetic import SYNTHETIC_CLASSES


def _sources(*dates: str | None) -> list[MosaicSource]:
    return [MosaicSource(f"s{i}", Path("c.tif"), Path("f.tif"), d) for i, d in enumerate(dates)]


def test_dates_rank_by_time_whatever_their_spelling() -> None:
    ranks = date_ranks(
        _sources(
            "2024-06-11T10:00:00Z",
            "2024-06-11T12:00:00+02:00",  # the same instant as the first
            "2024-06-01T10:00:00.123456Z",
            "2024-06-20",  # a date alone, no zone: taken as UTC
            "2024-06-11T10:30:00",
        )
    )
    assert ranks is not None
    assert ranks.tolist() == [1, 1, 0, 3, 2]


def test_a_scene_without_a_date_falls_back_with_one_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING, logger="geoseg.mosaic.build"):
        assert date_ranks(_sources("2024-06-11T10:00:00Z", None, "not a date")) is None
    (record,) = caplog.records
    assert "s1, s2 have no acquisition date" in record.message
    assert "choosing by confidence" in record.message


@pytest.mark.parametrize(
    ("count", "prefer", "message"),
    [
        (2, "latest", "--prefer latest: not a choice; use one of confidence, newest"),
        (0, "confidence", "no scene was mapped"),
        (65535, "confidence", "65535 scenes, but source.tif numbers at most 65534"),
    ],
)
def test_what_the_mosaic_cannot_represent_is_refused(count: int, prefer: str, message: str) -> None:
    sources = [MosaicSource(f"s{i}", Path("c.tif"), Path("f.tif")) for i in range(count)]
    with pytest.raises(ConfigError, match=message):
        check_mosaic_inputs(sources, SYNTHETIC_CLASSES, prefer)
