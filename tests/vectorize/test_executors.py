"""Where block tasks run (geoseg.vectorize.executors): in this process, on a LocalCluster started
for one raster or shared by several, or on a running scheduler."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import psutil
import pytest

import geoseg.vectorize.executors as executors_module
from geoseg.errors import ConfigError, SceneError
from geoseg.vectorize import SharedClient, VectorizeOptions, polygonize_array, vectorize_raster
from geoseg.vectorize.executors import LocalExecutor
from tests.support.rasters import CLASSES, ND, TRANSFORM, river, write_tif


def test_single_block_never_starts_dask(
    tifs, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_cluster(**_: object) -> None:
        raise AssertionError("a one-block raster must not start Dask")

    monkeypatch.setattr(executors_module, "dask_client", no_cluster)
    tif, array = tifs["synthetic_landscape"]
    result = vectorize_raster(tif, tmp_path / "p.gpkg", classes=CLASSES)
    assert (result.blocks, result.dask_workers) == (1, 0)
    assert result.n_polygons == len(polygonize_array(array, TRANSFORM))


def test_local_cluster_is_started_and_shut_down(tifs, tmp_path: Path) -> None:
    before = {p.pid for p in psutil.Process().children(recursive=True)}
    tif, array = tifs["river"]
    result = vectorize_raster(
        tif,
        tmp_path / "p.gpkg",
        classes=CLASSES,
        options=VectorizeOptions(block_size_px=128, workers=1),
    )
    assert (result.blocks, result.dask_workers) == (12, 1)
    assert result.n_polygons == len(polygonize_array(array, TRANSFORM))
    started = [
        p
        for p in psutil.Process().children(recursive=True)
        if p.pid not in before and "resource_tracker" not in " ".join(p.cmdline())
    ]  # multiprocessing's resource tracker outlives clusters by design: one per process
    _, alive = psutil.wait_procs(started, timeout=10)
    assert not alive, [p.cmdline() for p in alive]  # the workers (and nannies) are gone


def test_shared_client_starts_one_cluster_for_many_rasters(tifs, tmp_path: Path) -> None:
    """A run over several scenes starts its LocalCluster once, and only when one is needed."""
    one_block, _ = tifs["synthetic_landscape"]
    with SharedClient(workers=1) as shared:
        vectorize_raster(one_block, tmp_path / "a.gpkg", classes=CLASSES, client=shared)
        assert shared._client is None  # a one-block raster did not start the cluster
        tif, array = tifs["river"]
        options = VectorizeOptions(block_size_px=128, workers=1)
        first = vectorize_raster(
            tif, tmp_path / "b.gpkg", classes=CLASSES, options=options, client=shared
        )
        address = shared.get().scheduler.address
        second = vectorize_raster(
            tif, tmp_path / "c.gpkg", classes=CLASSES, options=options, client=shared
        )
        assert shared.get().scheduler.address == address
        assert first.dask_workers == second.dask_workers == 1
        assert first.n_polygons == second.n_polygons == len(polygonize_array(array, TRANSFORM))
    assert shared._client is None


def test_existing_scheduler_by_address(client, tifs, tmp_path: Path) -> None:
    tif, array = tifs["river"]
    result = vectorize_raster(
        tif,
        tmp_path / "p.gpkg",
        classes=CLASSES,
        options=VectorizeOptions(block_size_px=100, dask_address=client.scheduler.address),
    )
    assert result.dask_workers == 2
    assert result.n_polygons == len(polygonize_array(array, TRANSFORM))


def test_unreachable_scheduler_is_one_clear_error(
    tifs, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(executors_module, "DASK_CONNECT_TIMEOUT_S", 0.5)
    tif, _ = tifs["river"]
    out = tmp_path / "p.gpkg"
    with pytest.raises(ConfigError, match=r"--dask-address tcp://127\.0\.0\.1:9.*scheduler"):
        vectorize_raster(
            tif,
            out,
            classes=CLASSES,
            options=VectorizeOptions(block_size_px=100, dask_address="tcp://127.0.0.1:9"),
        )
    assert list(tmp_path.iterdir()) == []


def test_bad_values_found_by_a_worker_leave_no_output(client, tmp_path: Path) -> None:
    array = river().astype(np.uint16)
    array[array == ND] = 0
    array[250, 400] = 300  # only the last block sees it
    tif = write_tif(tmp_path / "bad.tif", array, nodata=None)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    with pytest.raises(SceneError, match=r"bad\.tif.*0\.\.254.*300"):
        vectorize_raster(
            tif,
            out_dir / "p.gpkg",
            classes=CLASSES,
            options=VectorizeOptions(block_size_px=64),
            client=client,
        )
    assert list(out_dir.iterdir()) == []


def test_local_executor_runs_a_task_once_when_its_value_is_needed() -> None:
    calls: list[int] = []

    def square(x: int) -> int:
        calls.append(x)
        return x * x

    executor = LocalExecutor()
    first = executor.submit(square, 3)
    second = executor.submit(square, first)  # a task's value is the argument of the next
    assert calls == []  # nothing runs ahead
    assert [value for _, value in executor.as_completed([second])] == [81]
    executor.settle(first)
    assert calls == [3, 9]
    executor.release(first)
    with pytest.raises(RuntimeError, match="released"):
        executor.settle(first)


def test_cluster_pays_off_only_past_its_start_cost() -> None:
    from geoseg.vectorize import cluster_pays_off
    from geoseg.vectorize.executors import (
        CLUSTER_OVERHEAD,
        CLUSTER_START_S,
        IN_PROCESS_S_PER_MPX,
    )

    # the break-even raster of w workers: t (1 - overhead / w) = start, t = px / 1e6 x cost
    for workers in (2, 4, 8):
        gain = 1 - CLUSTER_OVERHEAD / workers
        even_px = CLUSTER_START_S / (IN_PROCESS_S_PER_MPX * gain) * 1e6
        assert not cluster_pays_off(int(even_px * 0.99), workers)
        assert cluster_pays_off(int(even_px * 1.01), workers)
    assert not cluster_pays_off(10**12, 1)  # one worker is never faster than this process


def test_wants_cluster_follows_the_options(monkeypatch: pytest.MonkeyPatch) -> None:
    from geoseg.vectorize import wants_cluster

    monkeypatch.setattr(executors_module, "default_workers", lambda: 2)
    auto = VectorizeOptions(block_size_px=2048)
    assert not wants_cluster(auto, 10240, 10240)  # 25 blocks, too few to pay for a start
    assert wants_cluster(auto, 16384, 16384)
    assert not wants_cluster(VectorizeOptions(block_size_px=20000), 16384, 16384)  # one block
    assert wants_cluster(VectorizeOptions(block_size_px=128, workers=1), 300, 300)  # asked for
    assert not wants_cluster(VectorizeOptions(block_size_px=128, workers=0), 10**5, 10**5)
    assert wants_cluster(VectorizeOptions(block_size_px=128, dask_address="tcp://x:1"), 300, 300)


def test_default_options_keep_a_small_raster_in_this_process(
    tifs, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_cluster(**_: object) -> None:
        raise AssertionError("a small raster must not start a cluster by default")

    monkeypatch.setattr(executors_module, "dask_client", no_cluster)
    tif, array = tifs["river"]
    result = vectorize_raster(
        tif, tmp_path / "p.gpkg", classes=CLASSES, options=VectorizeOptions(block_size_px=128)
    )
    assert (result.blocks, result.dask_workers) == (12, 0)
    assert result.n_polygons == len(polygonize_array(array, TRANSFORM))


def test_shared_client_started_soon_is_used_or_shut_down(tifs, tmp_path: Path) -> None:
    tif, array = tifs["river"]
    options = VectorizeOptions(block_size_px=128, workers=1)
    with SharedClient(workers=1) as shared:
        shared.start_soon()  # returns at once; the cluster comes up in the background
        result = vectorize_raster(
            tif, tmp_path / "a.gpkg", classes=CLASSES, options=options, client=shared
        )
        assert result.dask_workers == 1
        assert result.n_polygons == len(polygonize_array(array, TRANSFORM))
    before = {p.pid for p in psutil.Process().children(recursive=True)}
    with SharedClient(workers=1) as unused:
        unused.start_soon()
    started = [
        p
        for p in psutil.Process().children(recursive=True)
        if p.pid not in before and "resource_tracker" not in " ".join(p.cmdline())
    ]
    _, alive = psutil.wait_procs(started, timeout=10)
    assert not alive  # a cluster started but never used is shut down on exit too


class _FlakyFuture:
    """A finished future whose first ``failures`` fetches lose their connection."""

    key = "block-7"

    def __init__(self, failures: int) -> None:
        self.failures, self.status = failures, "finished"

    def result(self) -> int:
        if self.failures:
            self.failures -= 1
            from distributed.comm.core import CommClosedError

            raise CommClosedError("in <TCP (closed) ConnectionPool.gather>: Stream is closed")
        return 42


def test_a_lost_connection_while_fetching_a_result_is_retried_then_named(client) -> None:
    from geoseg.errors import ClusterError
    from geoseg.vectorize.executors import fetch_result

    assert fetch_result(_FlakyFuture(failures=2), client, attempts=3) == 42
    with pytest.raises(ClusterError, match=r"Dask scheduler tcp://127\.0\.0\.1:\d+.*block-7.*3"):
        fetch_result(_FlakyFuture(failures=3), client, attempts=3)


def test_an_os_error_raised_by_a_task_is_not_retried(client) -> None:
    from geoseg.vectorize.executors import DaskExecutor

    def missing(_: int) -> None:
        raise FileNotFoundError("no such file: x.tif")

    executor = DaskExecutor(client)
    tasks = [executor.submit(pow, 2, 5), executor.submit(missing, 1)]
    with pytest.raises(FileNotFoundError, match=r"x\.tif"):
        dict(executor.as_completed(tasks))
