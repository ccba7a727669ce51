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
