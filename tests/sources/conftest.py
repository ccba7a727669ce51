"""Real servers for the remote-source tests: nginx, moto's S3 server, rustac's STAC API.

nginx and moto are started once per session by their first user; a STAC API is started per
test over the ndjson the test wrote (`stac_api`), and stopped when the test ends.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest

from tests.support.servers import (
    HttpServer,
    S3Server,
    moto_s3_server,
    nginx_server,
    stac_api_server,
)


@pytest.fixture(scope="session")
def http_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The folder the session's nginx serves: write files here, fetch them at http_server.url."""
    return tmp_path_factory.mktemp("http-root")


@pytest.fixture(scope="session")
def http_server(http_root: Path) -> Iterator[HttpServer]:
    """One real nginx for the session, serving `http_root` with byte ranges."""
    try:
        with nginx_server(http_root) as server:
            yield server
    except RuntimeError as exc:
        pytest.fail(str(exc))


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    """One real moto_server (S3 API, in memory) for the session."""
    try:
        with moto_s3_server() as server:
            yield server
    except RuntimeError as exc:
        pytest.fail(str(exc))


@pytest.fixture
def stac_api() -> Iterator[Callable[[Path], str]]:
    """Start `rustac serve` over an ndjson of items: ``url = stac_api(path)``; stopped after
    the test."""
    with ExitStack() as stack:

        def start(ndjson: Path) -> str:
            try:
                return stack.enter_context(stac_api_server(ndjson))
            except RuntimeError as exc:
                pytest.fail(str(exc))

        yield start
