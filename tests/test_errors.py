"""Errors name options the way the caller types them: CLI flags, or settings in the flows."""

from __future__ import annotations

import threading

import pytest

from geoseg.errors import ConfigError, option, setting_names
from geoseg.geo.grid import check_tile_overlap
from geoseg.training.settings import load_train_settings


def test_options_are_flags_by_default_and_settings_inside_setting_names() -> None:
    assert option("tile_size") == "--tile-size"
    with setting_names():
        assert option("tile_size") == "tile_size"
        with setting_names():
            assert option("out") == "out"
        assert option("out") == "out"  # nested blocks restore the outer state
    assert option("out") == "--out"


def test_library_messages_follow_the_naming() -> None:
    with pytest.raises(ConfigError, match=r"^--tile-size 32 is too small for --overlap 64"):
        check_tile_overlap(32, 64)
    with setting_names(), pytest.raises(ConfigError, match=r"^tile_size 32 .* overlap 64"):
        check_tile_overlap(32, 64)
    with setting_names(), pytest.raises(ConfigError, match=r"^tile_sise: unknown option"):
        load_train_settings(None, {"tile_sise": 3})


def test_the_naming_belongs_to_the_thread_that_asked_for_it() -> None:
    seen: list[str] = []
    with setting_names():
        worker = threading.Thread(target=lambda: seen.append(option("tile_size")))
        worker.start()
        worker.join()
    assert seen == ["--tile-size"]  # another thread (e.g. the CLI's) is not affected
