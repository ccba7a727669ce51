"""Servers of the flow tests over STAC items: nginx serving item files and COGs, a STAC API.

The same real servers as tests/sources (`tests.support.servers`): one nginx per session,
started by its first user, and ``rustac serve`` per use over the ndjson a test wrote (stopped
when the requesting fixture's scope ends).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest

from tests.support.servers import HttpServer, nginx_server, stac_api_server


@pytest.fixture(scope="session")
def flow_http_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The folder the flow tests' nginx serves (items and their COGs)."""
    return tmp_path_factory.mktemp("flow-http-root")


@pytest.fixture(scope="session")
def flow_http_server(flow_http_root: Path) -> Iterator[HttpServer]:
    """One real nginx for the session's flow tests, serving `flow_http_root`."""
    try:
        with nginx_server(flow_http_root) as server:
            yield server
    except RuntimeError as exc:
        pytest.fail(str(exc))


@pytest.fixture(scope="module")
def module_stac_api() -> Iterator[Callable[[Path], str]]:
    """Start `rustac serve` over an ndjson of items: ``url = module_stac_api(path)``; stopped
    when the module's tests are done."""
    with ExitStack() as stack:

        def start(ndjson: Path) -> str:
            try:
                return stack.enter_context(stac_api_server(ndjson))
            except RuntimeError as exc:
                pytest.fail(str(exc))

        yield start
