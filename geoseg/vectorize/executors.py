"""Where block tasks run: in this process, on a LocalCluster, or on a given scheduler.

`executor_for` picks one per raster: `LocalExecutor` (one block, ``workers=0``, or a raster
too small for a cluster to pay for its start, `cluster_pays_off`) or `DaskExecutor` on a given
client, a `SharedClient` or a LocalCluster started by `dask_client`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any, Protocol

from geoseg.errors import ClusterError, ConfigError, option

if TYPE_CHECKING:
    from distributed import Client

from geoseg.geo.grid import BlockGrid
from geoseg.vectorize.options import VectorizeOptions

_MAX_DEFAULT_WORKERS = 8

DASK_CONNECT_TIMEOUT_S = 10.0
"""How long to try reaching a scheduler given by address before giving up."""

CLUSTER_START_S = 2.6
"""Seconds a default LocalCluster adds to start and stop (measured on 2 cores, 10k x 10k:
5.6-5.9 s with the start vs 3.0-3.3 s without, `benchmarks/vectorize.py`)."""

IN_PROCESS_S_PER_MPX = 0.045
"""Seconds per million class-raster pixels vectorized in this process, blocks one after
another (measured: 3.9-4.9 s for 10k x 10k synthetic land cover, `benchmarks/vectorize.py`)."""

CLUSTER_OVERHEAD = 1.4
"""A block on a Dask worker takes this many times its in-process time (transfers, scheduling,
the seam merge on the client; measured: 3.0-3.3 s on 2 workers vs 4.4 s / 2)."""


def cluster_pays_off(pixels: int, workers: int) -> bool:
    """Whether ``workers`` Dask processes finish a raster sooner than this process alone.

    In this process the blocks take ``t = pixels / 1e6 x IN_PROCESS_S_PER_MPX``; on the
    cluster ``t x CLUSTER_OVERHEAD / workers`` plus its start, so the cluster wins when
    ``t x (1 - CLUSTER_OVERHEAD / workers) > CLUSTER_START_S``: on 2 cores above ~190 Mpx
    (13,900 px square), on 4 above ~89 Mpx, on 8 above ~70 Mpx.
    """
    gain = 1 - CLUSTER_OVERHEAD / workers
    if gain <= 0:
        return False
    return pixels / 1e6 * IN_PROCESS_S_PER_MPX * gain > CLUSTER_START_S


def wants_cluster(options: VectorizeOptions, height_px: int, width_px: int) -> bool:
    """Whether a raster of this size is vectorized on Dask under ``options``.

    A scheduler address or an explicit worker count always means Dask (for rasters of more
    than one block); ``workers=0`` never; the default (``workers=None``) only where
    `cluster_pays_off` with one worker per core.
    """
    if len(BlockGrid(height_px, width_px, options.block_size_px)) == 1:
        return False
    if options.dask_address is not None:
        return True
    if options.workers is not None:
        return options.workers > 0
    return cluster_pays_off(height_px * width_px, default_workers())


class Executor(Protocol):
    """Where block tasks run: this process (`LocalExecutor`) or Dask (`DaskExecutor`)."""

    def submit(self, fn: Callable[..., Any], *args: Any) -> Any: ...

    def as_completed(self, tasks: Sequence[Any]) -> Iterator[tuple[int, Any]]: ...

    def settle(self, task: Any) -> None: ...

    def release(self, task: Any) -> None: ...

    def cancel_all(self) -> None: ...


class _LocalTask:
    """A lazily computed call; its value is kept until released."""

    def __init__(self, fn: Callable[..., Any], args: tuple[Any, ...]) -> None:
        self._fn: Callable[..., Any] | None = fn
        self._args: tuple[Any, ...] = args
        self._value: Any = None
        self._state = "pending"

    def result(self) -> Any:
        if self._state == "released":
            raise RuntimeError("local executor: a released task was asked for its value")
        if self._state == "pending" and self._fn is not None:
            args = [a.result() if isinstance(a, _LocalTask) else a for a in self._args]
            self._value = self._fn(*args)
            self._fn, self._args, self._state = None, (), "done"
        return self._value

    def release(self) -> None:
        self._value, self._state = None, "released"


class LocalExecutor:
    """Runs block tasks in this process, one after another, when their results are needed."""

    def submit(self, fn: Callable[..., Any], *args: Any) -> _LocalTask:
        return _LocalTask(fn, args)

    def as_completed(self, tasks: Sequence[_LocalTask]) -> Iterator[tuple[int, Any]]:
        for i, task in enumerate(tasks):
            yield i, task.result()

    def settle(self, task: _LocalTask) -> None:
        task.result()

    def release(self, task: _LocalTask) -> None:
        task.release()

    def cancel_all(self) -> None:
        pass  # nothing runs ahead: a task runs only when its result is asked for


class DaskExecutor:
    """Runs block tasks on a dask.distributed cluster; results stay there until fetched."""

    def __init__(self, client: Client) -> None:
        self._client = client
        self._futures: list[Any] = []

    def submit(self, fn: Callable[..., Any], *args: Any) -> Any:
        future = self._client.submit(fn, *args, pure=False)
        self._futures.append(future)
        return future

    def as_completed(self, tasks: Sequence[Any]) -> Iterator[tuple[int, Any]]:
        """Each task's position and value, in the order the tasks finish.

        The values are fetched here, one `fetch_result` per task, not by distributed's
        ``as_completed(with_results=True)``: there a gather that fails on a closed connection
        stops the iterator without an error and the loop waits forever (dask/distributed#7331).
        """
        from distributed import as_completed

        position = {f.key: i for i, f in enumerate(tasks)}
        for future in as_completed(tasks):
            yield position[future.key], fetch_result(future, self._client)

    def settle(self, task: Any) -> None:
        pass  # the block result is kept on its worker until the seam pieces are extracted

    def release(self, task: Any) -> None:
        task.release()

    def cancel_all(self) -> None:
        self._client.cancel([f for f in self._futures if not f.done()])
        self._futures.clear()


FETCH_ATTEMPTS = 4
"""Tries to fetch a finished block result before a lost connection counts as fatal."""


def fetch_result(future: Any, client: Client, *, attempts: int = FETCH_ATTEMPTS) -> Any:
    """The value of a finished Dask future, retried when the connection to a worker drops.

    A finished result stays on its worker while the future is held, so a gather that failed
    on a closed stream (a connection-pool hiccup under load) is simply asked again; an error
    raised by the task itself propagates unchanged. After ``attempts`` lost connections a
    `ClusterError` names the scheduler.
    """
    lost: OSError | None = None
    for attempt in range(attempts):
        try:
            return future.result()
        except OSError as exc:  # distributed's CommClosedError is an OSError
            if future.status == "error":
                raise  # the task itself raised it (a SceneError is an OSError too)
            lost = exc
            time.sleep(0.2 * (attempt + 1))
    raise ClusterError(
        f"Dask scheduler {client.scheduler.address}: block result {future.key} could not be "
        f"fetched after {attempts} tries ({type(lost).__name__}: {lost}); check that the "
        f"workers are alive (their logs), or run without {option('dask_address')} to use a "
        "local cluster"
    ) from lost


def default_workers() -> int:
    """Worker processes of a default LocalCluster: one per available CPU core, at most 8."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return max(1, min(cores, _MAX_DEFAULT_WORKERS))


@contextlib.contextmanager
def _quiet_distributed() -> Iterator[None]:
    """distributed logs dozens of INFO lines per cluster; keep only warnings meanwhile."""
    logger = logging.getLogger("distributed")
    level = logger.level
    logger.setLevel(max(level, logging.WARNING))
    try:
        yield
    finally:
        logger.setLevel(level)


@contextlib.contextmanager
def dask_client(*, workers: int | None = None, address: str | None = None) -> Iterator[Client]:
    """A dask.distributed client for the duration of the ``with`` block.

    With ``address``: connected to that running scheduler (left running on exit). Otherwise a
    LocalCluster of ``workers`` processes (default `default_workers`), one thread each, no
    dashboard and geoseg already imported, started here and shut down on exit. distributed's
    logging is lowered to warnings meanwhile.
    """
    import dask
    from distributed import Client, LocalCluster

    with _quiet_distributed():
        if address:
            try:
                client = Client(address, timeout=DASK_CONNECT_TIMEOUT_S)
            except (OSError, TimeoutError, ValueError) as exc:
                raise ConfigError(
                    f"{option('dask_address')} {address}: no Dask scheduler answered ({exc}); "
                    "start one "
                    "(dask scheduler) and its workers, or leave the option out to use a local "
                    "cluster"
                ) from None
            with client:
                yield client
            return
        n_workers = default_workers() if workers is None else workers
        if n_workers < 1:
            raise ConfigError(
                f"{option('workers')}: a local Dask cluster needs at least one worker"
            )
        with (
            # Dask's nannies set MALLOC_TRIM_THRESHOLD_=65536 in their workers, which turns
            # off glibc's adaptive mmap threshold: every large numpy temporary is then a fresh
            # mmap and page-faults in, making block tasks ~1.4x slower. Blocks bound the
            # workers' memory anyway, so leave glibc's defaults.
            dask.config.set({"distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None}),
            LocalCluster(
                n_workers=n_workers,
                threads_per_worker=1,
                processes=True,
                dashboard_address=None,
                # no dashboard; its HTTP server on any free port, not 8787 (maybe taken)
                scheduler_kwargs={"dashboard": False, "dashboard_address": "127.0.0.1:0"},
                silence_logs=logging.WARNING,
                preload=["geoseg.vectorize"],  # imported while the workers start
            ) as cluster,
            Client(cluster) as client,
        ):
            yield client


class SharedClient:
    """One Dask client for several `vectorize_raster` calls, started on first need.

    A run over many scenes starts its LocalCluster (a few seconds) once, and not at all when
    no class raster needs one. `start_soon` starts it in a background thread, so that it is up
    by the time the first class raster is ready (its start overlaps prediction). Use as a
    context manager: the cluster it started is shut down on exit. The cluster lives in its own
    thread from start to shutdown (a Client must be closed in the context that opened it).
    """

    def __init__(self, *, workers: int | None = None, address: str | None = None) -> None:
        self._workers, self._address = workers, address
        self._client: Future[Client] | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start_soon(self) -> None:
        """Begin starting the cluster in a background thread (`get` then waits for it)."""
        if self._client is None:
            self._client = Future()
            self._stop.clear()
            self._thread = threading.Thread(
                target=self._serve, args=(self._client,), name="geoseg-dask", daemon=True
            )
            self._thread.start()

    def _serve(self, client: Future[Client]) -> None:
        try:
            with dask_client(workers=self._workers, address=self._address) as started:
                client.set_result(started)
                self._stop.wait()
        except BaseException as exc:  # reported by `get`; nothing else waits on this thread
            if not client.done():
                client.set_exception(exc)

    def get(self) -> Client:
        """The client, starting the cluster now unless `start_soon` already did."""
        self.start_soon()
        assert self._client is not None
        return self._client.result()

    def __enter__(self) -> SharedClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self._thread, self._client = None, None


@contextlib.contextmanager
def executor_for(
    grid: BlockGrid, options: VectorizeOptions, client: Client | SharedClient | None
) -> Iterator[tuple[Executor, int]]:
    """The executor for a raster and the number of Dask workers behind it (0 = none).

    When the ``with`` block raises, the Dask tasks not yet done are cancelled.
    """
    if len(grid) == 1 or (
        client is None and not wants_cluster(options, grid.height_px, grid.width_px)
    ):
        yield LocalExecutor(), 0
        return
    if isinstance(client, SharedClient):
        client = client.get()
    with contextlib.ExitStack() as stack:
        if client is None:
            client = stack.enter_context(
                dask_client(workers=options.workers, address=options.dask_address)
            )
        executor = DaskExecutor(client)
        try:
            yield executor, len(client.nthreads())
        except BaseException:
            executor.cancel_all()
            raise
