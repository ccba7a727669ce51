"""Real servers on loopback for the remote-source tests: nginx, moto's S3 server, a STAC API.

Every server here is the real program, started by the tests on a free 127.0.0.1 port and
stopped (with its children) when its context manager exits:

- `nginx_server` serves a folder over HTTP with byte ranges (Debian's nginx: Python's
  ``http.server`` ignores Range headers, so GDAL's /vsicurl/ would fetch whole files from it).
  Its access log records method, URI, status, body bytes and the Range header of each request,
  so tests can check that a read was partial.
- `moto_s3_server` is ``moto_server``, an S3-compatible API that GDAL reads through /vsis3/.
- `stac_api_server` is ``rustac serve`` over an ndjson of items (memory backend): collections,
  bbox and datetime search; no FILTER or QUERY extension.

`environ` sets environment variables for a block (GDAL reads its config options from them).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from itertools import count
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any

from tests.support.prefect_server import free_port, stop_process_group

BIN = Path(sys.executable).parent
NGINX = Path("/usr/sbin/nginx")
START_TIMEOUT_S = 30.0
SYNC_PATH = "/__log_sync__"
"""An nginx location answering 204: a request to it marks the end of the log so far."""
_FIELDS = 5
_sync_ids = count()


# ---------------------------------------------------------------------------------------------
# Processes.


def answers(url: str) -> bool:
    """Whether anything answers HTTP at ``url`` (an error status counts as an answer)."""
    try:
        with urllib.request.urlopen(url, timeout=2):
            return True
    except urllib.error.HTTPError:
        return True
    except OSError:
        return False


def _tail(path: Path, chars: int = 4000) -> str:
    """The end of a log file, or a note that it is missing."""
    try:
        return path.read_text(errors="replace")[-chars:]
    except OSError:
        return f"({path} is missing)"


@contextmanager
def running(
    name: str, argv: Sequence[str | Path], probe_url: str, log_dir: Path, *logs: Path
) -> Iterator[subprocess.Popen[bytes]]:
    """Start ``argv`` in its own process group; wait until ``probe_url`` answers; stop it.

    stdout and stderr go to ``log_dir/<name>.log``; when the process exits early or does not
    answer within START_TIMEOUT_S, the RuntimeError quotes that log and ``logs``.
    """
    out_path = log_dir / f"{name}.log"
    with out_path.open("wb") as out:
        proc = subprocess.Popen(
            [str(a) for a in argv], stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while not answers(probe_url):
            if proc.poll() is not None or time.monotonic() > deadline:
                state = (
                    f"exited with {proc.returncode}"
                    if proc.poll() is not None
                    else f"did not answer {probe_url} within {START_TIMEOUT_S:.0f} s"
                )
                quoted = "\n".join(f"--- {p}:\n{_tail(p)}" for p in (out_path, *logs))
                raise RuntimeError(f"{name} {state}: {' '.join(map(str, argv))}\n{quoted}")
            time.sleep(0.05)
        yield proc
    finally:
        stop_process_group(proc, timeout_s=10)


@contextmanager
def environ(**variables: str | None) -> Iterator[None]:
    """Set (or, for None, unset) environment variables meanwhile; restore them on exit."""
    saved = {key: os.environ.get(key) for key in variables}
    try:
        for key, value in variables.items():
            _set_env(key, value)
        yield
    finally:
        for key, value in saved.items():
            _set_env(key, value)


def _set_env(key: str, value: str | None) -> None:
    """os.environ[key] = value, or remove key for None."""
    if value is None:
        os.environ.pop(key, None)
    else:
        os.environ[key] = value


# ---------------------------------------------------------------------------------------------
# nginx.


@dataclass(frozen=True)
class LogLine:
    """One request in nginx's access log; ``range`` is the Range header ("" when absent)."""

    method: str
    uri: str
    status: int
    body_bytes: int
    range: str


@dataclass(frozen=True)
class HttpServer:
    """A started nginx serving ``root`` at ``url`` ("http://127.0.0.1:PORT")."""

    url: str
    root: Path
    access_log: Path

    def requests(self) -> list[LogLine]:
        """The requests logged so far, oldest first (waits until earlier ones are written).

        nginx writes a request's log line after sending the response, so a client may see the
        response first: a request to SYNC_PATH, once logged, shows that the lines of the
        requests answered before it are in.
        """
        return [line for line in self._synced_lines() if not line.uri.startswith(SYNC_PATH)]

    def bytes_sent(self, path_prefix: str = "") -> int:
        """Body bytes sent for requests whose URI starts with ``path_prefix``."""
        return sum(r.body_bytes for r in self.requests() if r.uri.startswith(path_prefix))

    def clear_log(self) -> None:
        """Empty the access log (truncated: nginx keeps appending to the same open file)."""
        self._synced_lines()
        with self.access_log.open("r+b") as log:
            log.truncate(0)

    def _synced_lines(self) -> list[LogLine]:
        """The log's lines, read once a fresh sync request has been logged."""
        marker = f"{SYNC_PATH}/{os.getpid()}-{next(_sync_ids)}"
        with urllib.request.urlopen(self.url + marker, timeout=5) as response:
            response.read()
        deadline = time.monotonic() + 5
        while True:
            lines = parse_access_log(self.access_log.read_text())
            if any(line.uri == marker for line in lines):
                return lines
            if time.monotonic() > deadline:
                raise RuntimeError(f"nginx did not log {marker} in {self.access_log}")
            time.sleep(0.01)


LOG_FORMAT = "$request_method\\t$request_uri\\t$status\\t$body_bytes_sent\\t$http_range"
"""Tab-separated access-log fields (nginx escapes control characters inside values)."""


def parse_access_log(text: str) -> list[LogLine]:
    """The LogLines of an access log written with LOG_FORMAT ("-" marks an empty field)."""
    lines = []
    for raw in text.splitlines():
        fields = raw.split("\t")
        if len(fields) != _FIELDS:
            continue  # a line still being written
        method, uri, status, body, range_ = fields
        lines.append(LogLine(method, uri, int(status), int(body), "" if range_ == "-" else range_))
    return lines


def nginx_conf(prefix: Path, root: Path, port: int) -> str:
    """An nginx.conf serving ``root`` on 127.0.0.1:port, with every file it writes in prefix.

    As root, nginx would run its workers as ``nobody``, who cannot read pytest's 0700 temp
    folders: ``user root;`` keeps them as root. /forbidden/ answers 403 and SYNC_PATH 204.
    """
    user = "user root;\n" if os.geteuid() == 0 else ""
    temps = "\n".join(
        f"    {kind}_temp_path {prefix / kind};"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    return f"""{user}worker_processes 1;
pid {prefix / "nginx.pid"};
error_log {prefix / "error.log"} info;
events {{ worker_connections 256; }}
http {{
    types {{ image/tiff tif tiff; application/json json; application/geo+json geojson; }}
    default_type application/octet-stream;
    log_format ranges "{LOG_FORMAT}";
    access_log {prefix / "access.log"} ranges;
{temps}
    sendfile on;
    keepalive_timeout 30s;
    server {{
        listen 127.0.0.1:{port};
        server_name localhost;
        root {root};
        autoindex off;
        location /forbidden/ {{ return 403; }}
        location {SYNC_PATH}/ {{ return 204; }}
    }}
}}
"""


@contextmanager
def nginx_server(root: Path) -> Iterator[HttpServer]:
    """Debian's nginx serving the folder ``root`` (byte ranges, 404, 403) on a free port."""
    if not NGINX.exists():
        raise RuntimeError(f"{NGINX} is missing: `make nginx` installs Debian's nginx")
    with TemporaryDirectory(prefix="nginx-") as tmp:
        prefix = Path(tmp)
        port = free_port()
        conf = prefix / "nginx.conf"
        conf.write_text(nginx_conf(prefix, root.resolve(), port))
        argv = [NGINX, "-p", prefix, "-c", conf, "-e", prefix / "error.log", "-g", "daemon off;"]
        server = HttpServer(f"http://127.0.0.1:{port}", root, prefix / "access.log")
        probe = f"{server.url}{SYNC_PATH}/start"
        with running("nginx", argv, probe, prefix, prefix / "error.log"):
            yield server


# ---------------------------------------------------------------------------------------------
# moto's S3 server.

DUMMY_KEY = "testing"
REGION = "us-east-1"


@dataclass(frozen=True)
class S3Server:
    """A started ``moto_server`` at ``endpoint`` ("127.0.0.1:PORT"), plain HTTP."""

    endpoint: str

    @property
    def url(self) -> str:
        """The endpoint as an http:// URL (boto3's endpoint_url)."""
        return f"http://{self.endpoint}"

    def gdal_env(self) -> dict[str, str]:
        """The variables with which GDAL's /vsis3/ (and boto3) talk to this server."""
        return {
            "AWS_S3_ENDPOINT": self.endpoint,
            "AWS_HTTPS": "NO",
            "AWS_VIRTUAL_HOSTING": "FALSE",
            "AWS_ACCESS_KEY_ID": DUMMY_KEY,
            "AWS_SECRET_ACCESS_KEY": DUMMY_KEY,
            "AWS_REGION": REGION,
        }

    def rasterio_env(self) -> Any:
        """A ``rasterio.Env`` for /vsis3/ and s3:// reads from this server.

        rasterio refuses AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY as Env options (it
        leaves credentials to a session): they go in an AWSSession, the rest as options.
        """
        import rasterio
        from rasterio.session import AWSSession

        session = AWSSession(
            aws_access_key_id=DUMMY_KEY,
            aws_secret_access_key=DUMMY_KEY,
            region_name=REGION,
            endpoint_url=self.endpoint,
        )
        return rasterio.Env(session=session, AWS_HTTPS="NO", AWS_VIRTUAL_HOSTING="FALSE")

    def client(self) -> Any:
        """A boto3 S3 client for this server."""
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.url,
            aws_access_key_id=DUMMY_KEY,
            aws_secret_access_key=DUMMY_KEY,
            region_name=REGION,
        )

    def upload(self, bucket: str, key: str, path: Path) -> str:
        """Put the file ``path`` at s3://bucket/key (creating the bucket); returns that URI."""
        self._upload(self.client(), bucket, key, path)
        return f"s3://{bucket}/{key}"

    def upload_dir(self, bucket: str, prefix: str, folder: Path) -> list[str]:
        """Put every file directly in ``folder`` under s3://bucket/prefix/; returns the URIs."""
        client = self.client()
        prefix = prefix.strip("/")
        uris = []
        for path in sorted(p for p in folder.iterdir() if p.is_file()):
            key = f"{prefix}/{path.name}" if prefix else path.name
            self._upload(client, bucket, key, path)
            uris.append(f"s3://{bucket}/{key}")
        return uris

    @staticmethod
    def _upload(client: Any, bucket: str, key: str, path: Path) -> None:
        """Create ``bucket`` if missing, then upload ``path`` to ``key``."""
        existing = {b["Name"] for b in client.list_buckets().get("Buckets", [])}
        if bucket not in existing:
            client.create_bucket(Bucket=bucket)
        client.upload_file(str(path), bucket, key)


@contextmanager
def moto_s3_server() -> Iterator[S3Server]:
    """``moto_server`` (moto's S3-compatible API, state in memory) on a free port."""
    port = free_port()
    server = S3Server(f"127.0.0.1:{port}")
    argv = [BIN / "moto_server", "-H", "127.0.0.1", "-p", str(port)]
    with (
        TemporaryDirectory(prefix="moto-") as tmp,
        running("moto_server", argv, f"{server.url}/moto-api/", Path(tmp)),
    ):
        yield server


# ---------------------------------------------------------------------------------------------
# A STAC API.


@contextmanager
def stac_api_server(ndjson: Path) -> Iterator[str]:
    """``rustac serve`` over the items in ``ndjson`` on a free port; yields the API root URL.

    The memory backend makes a collection for each ``collection`` the items name, so a search
    by collections finds them without collection documents. Quirks (rustac 0.9): a POST
    search with ``query`` or a ``filter`` returns no items, a GET one ignores ``query``;
    ``sortby`` is ignored; a GET search with ``collections`` or ``bbox`` that needs a next
    page answers 500 "unsupported value" (pystac-client searches with POST by default).
    """
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    argv = [BIN / "rustac", "serve", ndjson, "--addr", f"127.0.0.1:{port}"]
    with (
        TemporaryDirectory(prefix="rustac-") as tmp,
        running("rustac", argv, f"{url}/conformance", Path(tmp)),
    ):
        yield url
