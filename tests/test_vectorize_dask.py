"""Block-wise vectorization on Dask: exactly the polygons of one pass, whatever the blocks.

A real LocalCluster (2 worker processes) is started once for the module. The exhaustive
sweep over block sizes runs the same block tasks in this process (``workers=0``), which is
fast; the comparisons with GDAL's own CLI run on the cluster.
"""

from __future__ import annotations

import shutil
import sqlite3
import subprocess
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import psutil
import pyogrio
import pytest
import rasterio
import rasterio.features
import shapely
from pyogrio.raw import read as ogr_read
from scipy import ndimage
from typer.testing import CliRunner

import geoseg.vectorize.blockwise as run_module
import geoseg.vectorize.executors as executors_module
from geoseg.classes import ClassInfo
from geoseg.cli import app
from geoseg.errors import ConfigError, SceneError
from geoseg.geo.grid import BlockGrid
from geoseg.io.outputs import classes_tags, write_category_names
from geoseg.synthetic import make_landscape
from geoseg.vectorize import (
    BUILTIN_FIELDS,
    Connectivity,
    SharedClient,
    VectorizeOptions,
    classes_for_raster,
    dask_client,
    polygonize_array,
    vectorize_raster,
)
from geoseg.vectorize.blocks import _Job, _read_block
from geoseg.vectorize.executors import _LocalExecutor
from geoseg.vectorize.sieve import _plan_sieve, _sieve_block
from tests.support.cli import DEMO_MODEL
from tests.test_vectorize import (
    CLASSES,
    ND,
    PIXEL_AREA,
    RASTERS,
    TRANSFORM,
    gdal_polygonize,  # noqa: F401 - fixture
    run_gdal_polygonize,
    write_tif,
)

LAYER = "landcover"
FOUR, EIGHT = Connectivity.FOUR, Connectivity.EIGHT
CONNECTIVITIES = [FOUR, EIGHT]


# --------------------------------------------------------------------------- rasters


def synthetic_landscape() -> np.ndarray:
    """geoseg's synthetic land cover, 500 x 600, with nodata margins (rivers, roads, towns)."""
    return make_landscape((500, 600), seed=5, nodata_margin_px=40).labels


def river() -> np.ndarray:
    """Field squares crossed edge to edge by a meandering river with a tributary and islands."""
    rows, cols = np.indices((300, 420))
    a = (1 + (rows // 40 + 2 * (cols // 40)) % 3).astype(np.uint8)
    centre = 150 + 60 * np.sin(cols / 45.0)
    a[np.abs(rows - centre) < 3] = 0
    a[(np.abs(cols - 200 - 0.3 * rows) < 2) & (rows < centre)] = 0
    a[(np.abs(rows - centre) < 1) & (cols % 50 == 25)] = 2  # one-pixel islands in the river
    a[10:14, 10:14] = ND
    return a


def holes_across_seams() -> np.ndarray:
    """A hole, an island in it and a hole in the island, all centred on a block corner."""
    a = np.full((96, 96), 1, dtype=np.uint8)
    a[20:76, 20:76] = 2
    a[40:56, 40:56] = 3
    a[47:49, 47:49] = 1
    a[0:5, 44:52] = ND
    return a


ALL_RASTERS: dict[str, Callable[[], np.ndarray]] = {
    **RASTERS,
    "synthetic_landscape": synthetic_landscape,
    "river": river,
    "holes_across_seams": holes_across_seams,
}


@pytest.fixture(scope="module")
def client() -> Iterator[object]:
    with dask_client(workers=2) as started:
        started.wait_for_workers(2)
        yield started


@pytest.fixture(scope="module")
def tifs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, np.ndarray]]:
    folder = tmp_path_factory.mktemp("rasters")
    out = {}
    for name, make in ALL_RASTERS.items():
        array = make()
        out[name] = (write_tif(folder / f"{name}.tif", array), array)
    return out


@pytest.fixture(scope="module")
def gdal_results(gdal_polygonize: str, tmp_path_factory: pytest.TempPathFactory):  # noqa: F811
    """gdal_polygonize.py output per (raster, connectivity), computed once."""
    cache: dict[tuple[str, int], tuple[np.ndarray, np.ndarray]] = {}

    def get(name: str, array: np.ndarray, connectivity: Connectivity):
        key = (name, int(connectivity))
        if key not in cache:
            folder = tmp_path_factory.mktemp(f"gdal_{name}_{int(connectivity)}")
            geoms, values = run_gdal_polygonize(gdal_polygonize, array, folder, connectivity)
            # GDAL's 8-connected rings touch themselves at corners: repair for comparison
            # (the covered point set does not change).
            geoms = shapely.make_valid(geoms, method="structure", keep_collapsed=False)
            cache[key] = (geoms, values)
        return cache[key]

    return get


def read_layer(path: Path) -> tuple[np.ndarray, dict[str, np.ndarray], dict]:
    info = pyogrio.read_info(path, layer=LAYER)
    _, _, wkb, fields = ogr_read(path, layer=LAYER)
    return shapely.from_wkb(wkb), dict(zip(info["fields"], fields, strict=True)), info


def match(ours: np.ndarray, theirs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pairs (our index, their index): each of ours inside exactly one distinct of theirs."""
    tree = shapely.STRtree(theirs)
    i, j = tree.query(shapely.point_on_surface(ours), predicate="within")
    assert np.array_equal(np.sort(i), np.arange(len(ours)))
    assert len(set(j.tolist())) == len(ours)
    return i, j


def assert_same_polygons(ours: np.ndarray, theirs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    assert len(ours) == len(theirs)
    if not len(ours):
        return np.empty(0, int), np.empty(0, int)
    i, j = match(ours, theirs)
    sym_diff = shapely.area(shapely.symmetric_difference(ours[i], theirs[j]))
    assert sym_diff.max() <= 1e-9 * PIXEL_AREA
    return i, j


def normalized(geoms: np.ndarray) -> list[bytes]:
    return sorted(shapely.to_wkb(shapely.normalize(geoms)))


# --------------------------------------------------------------------------- vs gdal_polygonize

DASK_CASES = [
    ("synthetic_landscape", 128),
    ("synthetic_landscape", 256),
    ("river", 100),
    ("river", 150),
    ("holes_across_seams", 37),
    ("holes_across_seams", 48),
    ("noise", 7),
    ("noise", 37),
    ("checkerboard", 5),
    ("block_checkerboard", 7),
    ("ring_with_island", 4),
    ("diagonal_touches", 2),
    ("diagonal_touches", 3),
    ("single_class", 7),
    ("all_nodata", 3),
]


@pytest.mark.parametrize("connectivity", CONNECTIVITIES, ids=["4", "8"])
@pytest.mark.parametrize(("name", "block_px"), DASK_CASES, ids=[f"{n}-{b}" for n, b in DASK_CASES])
def test_dask_gives_the_polygons_of_gdal_polygonize(
    *,
    name: str,
    block_px: int,
    connectivity: Connectivity,
    client,
    tifs,
    gdal_results,
    tmp_path: Path,
) -> None:
    tif, array = tifs[name]
    result = vectorize_raster(
        tif,
        tmp_path / "p.gpkg",
        classes=CLASSES,
        connectivity=connectivity,
        options=VectorizeOptions(block_size_px=block_px),
        client=client,
    )
    grid = BlockGrid(*array.shape, block_px)
    assert result.blocks == len(grid) > 1
    assert result.dask_workers == 2
    geoms, columns, info = read_layer(result.path)
    assert info["geometry_type"] == ("Polygon" if connectivity == FOUR else "MultiPolygon")
    assert info["features"] == result.n_polygons
    assert shapely.is_valid(geoms).all()

    gdal_geoms, gdal_values = gdal_results(name, array, connectivity)
    i, j = assert_same_polygons(geoms, gdal_geoms)
    assert np.array_equal(columns["class_id"][i], gdal_values[j])
    np.testing.assert_allclose(columns["area_m2"], columns["pixel_count"] * PIXEL_AREA, rtol=1e-12)
    np.testing.assert_allclose(columns["perimeter_m"], shapely.length(geoms), rtol=1e-12)
    if connectivity == FOUR:  # the very same rings: no vertex left where seams were
        assert normalized(geoms) == normalized(gdal_geoms)


@pytest.mark.parametrize("connectivity", CONNECTIVITIES, ids=["4", "8"])
@pytest.mark.parametrize("name", list(ALL_RASTERS))
def test_every_block_size_gives_the_single_pass_polygons(
    name: str, connectivity: Connectivity, tifs, tmp_path: Path
) -> None:
    """The block tasks in this process (workers=0): block sizes down to one pixel."""
    tif, array = tifs[name]
    single = polygonize_array(array, TRANSFORM, connectivity=connectivity)
    for block_px in (1, 2, 3, 5, 16, 37, 100):
        if len(BlockGrid(*array.shape, block_px)) > 150:
            continue
        result = vectorize_raster(
            tif,
            tmp_path / f"p{block_px}.gpkg",
            classes=CLASSES,
            connectivity=connectivity,
            options=VectorizeOptions(block_size_px=block_px, workers=0),
        )
        geoms, columns, _ = read_layer(result.path)
        i, j = assert_same_polygons(geoms, single.geometry)
        assert np.array_equal(columns["class_id"][i], single.class_id[j])
        assert np.array_equal(columns["pixel_count"][i], single.pixel_count[j])
        if connectivity == FOUR:
            assert normalized(geoms) == normalized(single.geometry), block_px


def test_river_spanning_every_block_comes_out_whole(client, tifs, tmp_path: Path) -> None:
    tif, array = tifs["river"]
    result = vectorize_raster(
        tif,
        tmp_path / "p.gpkg",
        classes=CLASSES,
        options=VectorizeOptions(block_size_px=40),
        client=client,
    )
    geoms, columns, _ = read_layer(result.path)
    water = geoms[columns["class_id"] == 0]
    assert len(water) == 1  # one river, tributary included, across 8 x 11 blocks
    (river_polygon,) = water
    grid = BlockGrid(*array.shape, 40)
    assert river_polygon.bounds[0] == TRANSFORM.c
    assert river_polygon.bounds[2] == TRANSFORM.c + array.shape[1] * TRANSFORM.a
    assert len(river_polygon.interiors) > 3  # the islands
    single = polygonize_array(array, TRANSFORM)
    assert normalized(water) == normalized(single.geometry[single.class_id == 0])
    assert river_polygon.area == np.count_nonzero(array == 0) * PIXEL_AREA
    assert len(grid) == 88


def test_only_seam_pieces_are_merged(tifs, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Regions inside a block pass straight to the writer; merge tasks see only seam pieces."""
    tif, _ = tifs["synthetic_landscape"]
    merged_inputs: list[int] = []
    polygonized: list[tuple[int, int]] = []
    real_merge = run_module._merge_pieces
    real_block = run_module._polygonize_block

    def spy_merge(job, nodes, group_of, n_groups, *selections):
        merged_inputs.append(sum(len(s) for s in selections))
        return real_merge(job, nodes, group_of, n_groups, *selections)

    def spy_block(job, block, sieve):
        out = real_block(job, block, sieve)
        polygonized.append((len(out.features), len(out.seams)))
        return out

    monkeypatch.setattr(run_module, "_merge_pieces", spy_merge)
    monkeypatch.setattr(run_module, "_polygonize_block", spy_block)
    result = vectorize_raster(
        tif,
        tmp_path / "p.gpkg",
        classes=CLASSES,
        options=VectorizeOptions(block_size_px=200, workers=0),
    )
    interior = sum(n for n, _ in polygonized)
    seam_pieces = sum(n for _, n in polygonized)
    assert len(polygonized) == 9
    assert sum(merged_inputs) == seam_pieces  # every seam piece once, nothing else
    assert interior > 0 and seam_pieces > 0
    assert interior < result.n_polygons < interior + seam_pieces  # pieces were joined


# --------------------------------------------------------------------------- attributes


@pytest.mark.parametrize("connectivity", CONNECTIVITIES, ids=["4", "8"])
def test_mean_confidence_and_counts_equal_single_pass(
    connectivity: Connectivity, client, tifs, tmp_path: Path
) -> None:
    tif, array = tifs["synthetic_landscape"]
    rng = np.random.default_rng(4)
    confidence = rng.integers(20, 101, array.shape).astype(np.uint8)
    confidence[array == ND] = 255
    confidence[rng.random(array.shape) < 0.05] = 255  # unknown pixels inside regions too
    conf_tif = write_tif(tmp_path / "confidence.tif", confidence, nodata=255)
    result = vectorize_raster(
        tif,
        tmp_path / "p.gpkg",
        classes=CLASSES,
        confidence_path=conf_tif,
        connectivity=connectivity,
        extra_attributes={"scene": "S1", "model_sha256": "ab" * 32},
        options=VectorizeOptions(block_size_px=64),
        client=client,
    )
    geoms, columns, info = read_layer(result.path)
    assert list(info["fields"]) == [*BUILTIN_FIELDS, "scene", "model_sha256"]
    single = polygonize_array(
        array,
        TRANSFORM,
        connectivity=connectivity,
        confidence=np.where(confidence == 255, np.nan, confidence),
    )
    i, j = assert_same_polygons(geoms, single.geometry)
    assert np.array_equal(columns["pixel_count"][i], single.pixel_count[j])
    # Sums of integers: the same float result whatever the blocks.
    assert np.array_equal(columns["mean_confidence"][i], single.mean_confidence[j])
    assert set(columns["scene"]) == {"S1"}
    for cid in np.unique(array[array != ND]):
        assert result.polygons_per_class[int(cid)] == np.count_nonzero(single.class_id == cid)
        assert result.area_m2_per_class[int(cid)] == pytest.approx(
            np.count_nonzero(array == cid) * PIXEL_AREA, rel=1e-12
        )


# --------------------------------------------------------------------------- sieve


def sieve_blockwise(
    tif: Path, shape: tuple[int, int], threshold_px: int, connectivity: Connectivity, block: int
) -> np.ndarray:
    """The sieved raster as the blocks see it (all phases in this process)."""
    job = _Job(str(tif), None, *shape, TRANSFORM, "", connectivity, block, threshold_px)
    grid = BlockGrid(*shape, block)
    plans = _plan_sieve(job, grid, _LocalExecutor())
    out = np.empty(shape, dtype=np.uint8)
    for b, plan in zip(grid.blocks(), plans, strict=True):
        rows = slice(b.row_off, b.row_off + b.height)
        cols = slice(b.col_off, b.col_off + b.width)
        out[rows, cols] = _sieve_block(job, b, _read_block(job, b), plan)
    return out


def smooth_random(seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    field = ndimage.gaussian_filter(rng.standard_normal((90, 80)), 1.5)
    classes = np.digitize(field, np.quantile(field, [0.25, 0.5, 0.75])).astype(np.uint8)
    classes[rng.random(classes.shape) < 0.02] = ND
    return classes


@pytest.mark.parametrize("connectivity", CONNECTIVITIES, ids=["4", "8"])
@pytest.mark.parametrize("name", ["noise", "smooth", "landscape", "diagonal_touches"])
def test_blockwise_sieve_equals_sieving_the_whole_raster(
    name: str, connectivity: Connectivity, tmp_path: Path
) -> None:
    """Ties, chains of small regions, nodata: the same pixels as GDAL's sieve (rasterio)."""
    array = smooth_random(2) if name == "smooth" else ALL_RASTERS[name]()
    tif = write_tif(tmp_path / "c.tif", array)
    for threshold in (2, 5, 17):
        expected = rasterio.features.sieve(
            array, threshold, mask=array != ND, connectivity=int(connectivity)
        )
        for block in (3, 7, 37, 1000):
            if len(BlockGrid(*array.shape, block)) > 400:
                continue
            got = sieve_blockwise(tif, array.shape, threshold, connectivity, block)
            assert np.array_equal(got, expected), (threshold, block, (got != expected).sum())


@pytest.mark.parametrize("connectivity", CONNECTIVITIES, ids=["4", "8"])
def test_min_area_on_dask_equals_sieved_single_pass(
    connectivity: Connectivity, client, tifs, tmp_path: Path
) -> None:
    tif, array = tifs["synthetic_landscape"]
    result = vectorize_raster(
        tif,
        tmp_path / "p.gpkg",
        classes=CLASSES,
        connectivity=connectivity,
        options=VectorizeOptions(block_size_px=64, min_area_m2=24.5 * PIXEL_AREA),
        client=client,
    )
    sieved = rasterio.features.sieve(array, 25, mask=array != ND, connectivity=int(connectivity))
    assert (sieved != array).sum() > 100  # the sieve did something
    single = polygonize_array(sieved, TRANSFORM, connectivity=connectivity)
    geoms, columns, _ = read_layer(result.path)
    i, j = assert_same_polygons(geoms, single.geometry)
    assert np.array_equal(columns["pixel_count"][i], single.pixel_count[j])


# --------------------------------------------------------------------------- simplify


@pytest.mark.parametrize("connectivity", CONNECTIVITIES, ids=["4", "8"])
@pytest.mark.parametrize("name", ["synthetic_landscape", "river"])
def test_simplify_keeps_a_valid_coverage_across_seams(
    name: str, connectivity: Connectivity, client, tifs, tmp_path: Path
) -> None:
    tif, array = tifs[name]
    plain = vectorize_raster(
        tif,
        tmp_path / "plain.gpkg",
        classes=CLASSES,
        connectivity=connectivity,
        options=VectorizeOptions(block_size_px=64, workers=0),
    )
    result = vectorize_raster(
        tif,
        tmp_path / "simple.gpkg",
        classes=CLASSES,
        connectivity=connectivity,
        options=VectorizeOptions(block_size_px=64, simplify_m=25.0),
        client=client,
    )
    geoms, columns, _ = read_layer(result.path)
    plain_geoms, _, _ = read_layer(plain.path)
    assert result.n_polygons == plain.n_polygons  # no region vanishes
    assert shapely.is_valid(geoms).all()
    assert shapely.coverage_is_valid(geoms)  # no overlaps, shared edges shared
    assert shapely.get_num_coordinates(geoms).sum() < shapely.get_num_coordinates(plain_geoms).sum()
    if not (array == ND).any():  # no gaps: the polygons tile the raster exactly
        raster_area = array.size * PIXEL_AREA
        assert shapely.area(geoms).sum() == pytest.approx(raster_area, rel=1e-9)
        assert shapely.union_all(geoms).area == pytest.approx(raster_area, rel=1e-9)
    else:
        valid_area = np.count_nonzero(array != ND) * PIXEL_AREA
        assert shapely.area(geoms).sum() == pytest.approx(valid_area, rel=0.01)
    np.testing.assert_allclose(columns["area_m2"], shapely.area(geoms), rtol=1e-9)


# --------------------------------------------------------------------------- clusters


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


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"block_size_px": 0}, "--block-size"),
        ({"workers": -1}, "--workers"),
        ({"min_area_m2": -1.0}, "--min-area"),
        ({"simplify_m": float("nan")}, "--simplify"),
    ],
)
def test_bad_options_are_refused(options: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        VectorizeOptions(**options)


# --------------------------------------------------------------------------- CLI and GDAL


runner = CliRunner()


def test_cli_vectorize_on_a_cluster(client, tifs, tmp_path: Path) -> None:
    _, array = tifs["synthetic_landscape"]
    named = (ClassInfo(0, "water", "#2b6cb0"), ClassInfo(1, "forest", "#1e5631"))
    folder = tmp_path / "scene7"
    folder.mkdir()
    tif = write_tif(folder / "classes.tif", array)
    with rasterio.open(tif, "r+") as ds:
        ds.update_tags(**classes_tags(named))
    confidence = np.full(array.shape, 80, dtype=np.uint8)
    conf_tif = write_tif(folder / "confidence.tif", confidence, nodata=None)
    out = tmp_path / "out" / "polygons.gpkg"
    out.parent.mkdir()
    args = [
        "vectorize", str(tif), "--out", str(out), "--confidence", str(conf_tif),
        "--connectivity", "8", "--block-size", "100",
        "--dask-address", client.scheduler.address,
    ]  # fmt: skip
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "polygons" in result.stdout and "30 block(s) on 2 Dask workers" in result.stdout
    geoms, columns, info = read_layer(out)
    assert info["geometry_type"] == "MultiPolygon"
    assert sorted(p.name for p in out.parent.iterdir()) == ["polygons.gpkg", "polygons.qml"]
    names = dict(zip(columns["class_id"].tolist(), columns["class_name"], strict=True))
    assert names[0] == "water" and names[1] == "forest"
    assert all(names[c] == f"class {c}" for c in names if c > 1)
    assert set(columns["scene"]) == {"scene7"}
    assert set(columns["mean_confidence"]) == {80.0}
    single = polygonize_array(array, TRANSFORM, connectivity=EIGHT)
    assert_same_polygons(geoms, single.geometry)


def test_cli_vectorize_refuses_bad_input_in_one_line(tifs, tmp_path: Path) -> None:
    tif, _ = tifs["river"]
    out = tmp_path / "p.gpkg"
    for args, fragment in [
        (["vectorize", str(tmp_path / "missing.tif"), "--out", str(out)], "missing.tif"),
        (["vectorize", str(tif), "--out", str(out), "--connectivity", "6"], "--connectivity"),
        (["vectorize", str(tif), "--out", str(out), "--block-size", "0"], "--block-size"),
        (["vectorize", str(tif), "--out", str(tmp_path / "p.shp")], ".gpkg"),
    ]:
        result = runner.invoke(app, args)
        assert result.exit_code != 0
        assert result.stderr.startswith("error:") and fragment in result.stderr, result.stderr
        assert "Traceback" not in result.output
    assert list(tmp_path.iterdir()) == []


@pytest.mark.skipif(not DEMO_MODEL.exists(), reason="demo model not built (make demo-model)")
def test_cli_vectorize_with_model_package(tifs, tmp_path: Path) -> None:
    from geoseg.models.package import load_package

    tif, _ = tifs["noise"]
    out = tmp_path / "p.gpkg"
    result = runner.invoke(app, ["vectorize", str(tif), "--out", str(out), "--model", DEMO_MODEL])
    assert result.exit_code == 0, result.output
    package = load_package(DEMO_MODEL)
    _, columns, _ = read_layer(out)
    names = {c.id: c.name for c in package.metadata.class_infos()}
    assert [names[c] for c in columns["class_id"]] == list(columns["class_name"])
    assert set(columns["model_sha256"]) == {package.sha256}


def test_classes_from_colour_table_and_category_names(tmp_path: Path) -> None:
    tif = write_tif(tmp_path / "c.tif", np.array([[0, 1], [3, 3]], dtype=np.uint8))
    with rasterio.open(tif, "r+") as ds:
        ds.write_colormap(1, {0: (10, 20, 30, 255), 1: (0, 0, 0, 255), 3: (1, 2, 3, 255)})
    write_category_names(tif, (ClassInfo(0, "lake", "#000000"), ClassInfo(1, "asphalt", "#000000")))
    assert classes_for_raster(tif) == (
        ClassInfo(0, "lake", "#0a141e"),
        ClassInfo(1, "asphalt", "#000000"),  # black but named: a class
        ClassInfo(3, "class 3", "#010203"),
    )
    plain = write_tif(tmp_path / "plain.tif", np.zeros((2, 2), np.uint8))
    assert classes_for_raster(plain) == ()
    result = vectorize_raster(plain, tmp_path / "p.gpkg", classes=())
    assert result.class_names == {0: "class 0"}


@pytest.mark.skipif(shutil.which("ogrinfo") is None, reason="GDAL's ogrinfo CLI not on PATH")
def test_ogr_reads_style_and_attributes(client, tifs, tmp_path: Path) -> None:
    tif, _ = tifs["river"]
    out = vectorize_raster(
        tif,
        tmp_path / "p.gpkg",
        classes=CLASSES,
        extra_attributes={"scene": "river"},
        options=VectorizeOptions(block_size_px=100),
        client=client,
    ).path
    summary = subprocess.run(
        ["ogrinfo", "-ro", "-so", str(out), LAYER], capture_output=True, text=True, check=True
    ).stdout
    for column, kind in [
        ("class_id", "Integer"),
        ("class_name", "String"),
        ("pixel_count", "Integer64"),
        ("area_m2", "Real"),
        ("perimeter_m", "Real"),
        ("mean_confidence", "Real"),
        ("scene", "String"),
    ]:
        assert f"{column}: {kind}" in summary, summary
    styles = subprocess.run(
        ["ogrinfo", "-ro", str(out), "-sql",
         "SELECT f_table_name, f_geometry_column, useAsDefault, styleQML FROM layer_styles"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    assert f"f_table_name (String) = {LAYER}" in styles
    assert "f_geometry_column (String) = geom" in styles
    assert "useAsDefault (Integer(Boolean)) = 1" in styles
    assert 'type="categorizedSymbol"' in styles and 'attr="class_id"' in styles
    with sqlite3.connect(out) as con:
        qml = con.execute("SELECT styleQML FROM layer_styles").fetchone()[0]
    root = ET.fromstring(qml.split("\n", 1)[1])
    labels = {c.get("value"): c.get("label") for c in root.iter("category")}
    assert labels == {str(c.id): c.name for c in CLASSES}
    assert "Feature Count: " in summary and "32633" in summary


# --------------------------------------------------------------------------- geoseg run


def gdal_polygonize_file(exe: str, tif: Path, folder: Path) -> tuple[np.ndarray, np.ndarray]:
    out = folder / "gdal.gpkg"
    subprocess.run(
        [exe, "-q", str(tif), "-f", "GPKG", str(out), "out", "DN"], check=True, capture_output=True
    )
    _, _, wkb, fields = ogr_read(out, layer="out")
    return shapely.from_wkb(wkb), np.asarray(fields[0])


@pytest.mark.slow
def test_geoseg_run_polygons_match_gdal(
    *,
    client,
    scene_512,
    demo_model: Path,
    gdal_polygonize: str,  # noqa: F811
    tmp_path: Path,
) -> None:
    """`geoseg run` vectorizes with the same function: blocks on Dask, gdal's polygons."""
    out = tmp_path / "run"
    args = [
        "run", "--aoi", str(scene_512.aoi_path), "--scenes", str(scene_512.image_path),
        "--model", str(demo_model), "--out", str(out), "--device", "cpu",
        "--block-size", "128", "--dask-address", client.scheduler.address,
    ]  # fmt: skip
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    scene_dir = out / "scene"
    with rasterio.open(scene_dir / "classes.tif") as ds:
        classes = ds.read(1)
        transform = ds.transform
    with rasterio.open(scene_dir / "confidence.tif") as ds:
        confidence = ds.read(1).astype(float)
        confidence[ds.read_masks(1) == 0] = np.nan
    assert len(BlockGrid(*classes.shape, 128)) > 4
    geoms, columns, _ = read_layer(scene_dir / "polygons.gpkg")
    gdal_geoms, gdal_values = gdal_polygonize_file(
        gdal_polygonize, scene_dir / "classes.tif", tmp_path
    )
    i, j = assert_same_polygons(geoms, gdal_geoms)
    assert np.array_equal(columns["class_id"][i], gdal_values[j])
    single = polygonize_array(classes, transform, confidence=confidence)
    i, j = match(geoms, single.geometry)
    assert np.array_equal(columns["mean_confidence"][i], single.mean_confidence[j])
    assert np.array_equal(columns["pixel_count"][i], single.pixel_count[j])
