"""Flow users pass settings (``tile_size``), not CLI flags: geoseg's messages say so in tasks."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import ParamSpec, TypeVar

from geoseg.errors import setting_names

P = ParamSpec("P")
R = TypeVar("R")


def settings_named(fn: Callable[P, R]) -> Callable[P, R]:
    """Run a task body with geoseg's messages naming settings (``tile_size``), not flags."""

    @functools.wraps(fn)
    def named(*args: P.args, **kwargs: P.kwargs) -> R:
        with setting_names():
            return fn(*args, **kwargs)

    return named
