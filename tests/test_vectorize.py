"""Class raster -> polygons (geoseg.vectorize), checked against GDAL's gdal_polygonize.py."""

from __future__ import annotations

import shutil
import subprocess
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyogrio
import pyproj
import pytest
import rasterio
import shapely
from affine import Affine
from pyogrio.raw import read as ogr_read
from scipy import ndimage

from geoseg.classes import CLASS_NODATA, ClassInfo
from geoseg.errors import ConfigError, SceneError
from geoseg.geo.scene import measure_m
from geoseg.vectorize import (
    BUILTIN_FIELDS,
    Connectivity,
    label_components,
    polygonize_array,
    polygonize_labels,
    vectorize_raster,
)
from geoseg.vectorize.core import _repair_if_invalid

ND = CLASS_NODATA
UTM = "EPSG:32633"
TRANSFORM = Affine(10.0, 0.0, 500_000.0, 0.0, -10.0, 4_100_000.0)
PIXEL_AREA = 100.0
CLASSES = tuple(
    ClassInfo(i, name, color)
    for i, (name, color) in enumerate(
        [
            ("water", "#1f78b4"),
            ("forest", "#33a02c"),
            ("grass", "#b2df8a"),
            ("urban", "#e31a1c"),
            ("bare", "#fdbf6f"),
        ]
    )
)


# --------------------------------------------------------------------------- rasters


def landscape() -> np.ndarray:
    """Blurred random field quantized to 5 classes, with nodata patches (~300 x 257)."""
    rng = np.random.default_rng(42)
    field = ndimage.gaussian_filter(rng.standard_normal((257, 300)), sigma=5)
    classes = np.digitize(field, np.quantile(field, [0.2, 0.4, 0.6, 0.8])).astype(np.uint8)
    classes[100:130, 40:75] = ND  # a nodata lake
    classes[:, :3] = ND  # a nodata edge strip
    classes[200, 200] = ND  # a single nodata pixel inside some region
    return classes


def checkerboard() -> np.ndarray:
    """1-pixel checks of two classes: every same-class neighbour touches only at corners."""
    rows, cols = np.indices((16, 18))
    return ((rows + cols) % 2).astype(np.uint8)


def block_checkerboard() -> np.ndarray:
    rows, cols = np.indices((24, 30))
    return ((rows // 3 + cols // 3) % 3).astype(np.uint8)


def noise() -> np.ndarray:
    """1-pixel random noise of 3 classes (64 x 64) with some nodata pixels."""
    rng = np.random.default_rng(7)
    classes = rng.integers(0, 3, (64, 64)).astype(np.uint8)
    classes[rng.random((64, 64)) < 0.05] = ND
    return classes


def single_class() -> np.ndarray:
    return np.full((20, 30), 3, dtype=np.uint8)


def ring_with_island() -> np.ndarray:
    """Class 1 ring around a class 2 hole holding a class 3 island; a nodata pixel in the ring."""
    a = np.zeros((11, 11), dtype=np.uint8)
    a[1:10, 1:10] = 1
    a[3:8, 3:8] = 2
    a[5, 5] = 3
    a[1, 5] = 1
    a[2, 2] = ND
    return a


def diagonal_touches() -> np.ndarray:
    """Regions that touch only at corners, including a corner-closed ring and nodata corners."""
    return np.array(
        [
            [1, 0, 0, 1, 0, 2, 2],
            [0, 1, 1, 0, 2, 0, 2],
            [0, 1, 1, 0, 2, 2, 0],
            [1, 0, 0, 1, 0, 0, 0],
            [0, 2, 0, ND, 0, 1, 0],
            [2, 0, 2, 0, ND, 0, 1],
            [0, 2, 0, 0, 0, 1, 0],
        ],
        dtype=np.uint8,
    )


def all_nodata() -> np.ndarray:
    return np.full((8, 9), ND, dtype=np.uint8)


RASTERS: dict[str, Callable[[], np.ndarray]] = {
    "landscape": landscape,
    "checkerboard": checkerboard,
    "block_checkerboard": block_checkerboard,
    "noise": noise,
    "single_class": single_class,
    "ring_with_island": ring_with_island,
    "diagonal_touches": diagonal_touches,
    "all_nodata": all_nodata,
}
CONNECTIVITIES = [Connectivity.FOUR, Connectivity.EIGHT]


def write_tif(
    path: Path,
    array: np.ndarray,
    *,
    transform: Affine = TRANSFORM,
    crs: str | None = UTM,
    nodata: float | None = ND,
) -> Path:
    with rasterio.open(
        path,
        "w",
        driver="GTiff",
        width=array.shape[1],
        height=array.shape[0],
        count=1,
        dtype=array.dtype,
        crs=crs,
        transform=transform,
        nodata=nodata,
    ) as dst:
        dst.write(array, 1)
    return path


def pixel_centres(shape: tuple[int, int], transform: Affine) -> tuple[np.ndarray, np.ndarray]:
    rows, cols = np.indices(shape)
    return map_xy(transform, cols + 0.5, rows + 0.5)


def map_xy(transform: Affine, cols: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Map coordinates of pixel positions (col, row)."""
    a, b, c, d, e, f = tuple(transform)[:6]
    cols, rows = np.asarray(cols, dtype=np.float64), np.asarray(rows, dtype=np.float64)
    return a * cols + b * rows + c, d * cols + e * rows + f


# --------------------------------------------------------------------------- vs gdal_polygonize


@pytest.fixture(scope="module")
def gdal_polygonize() -> str:
    exe = shutil.which("gdal_polygonize.py")
    if exe is None:
        pytest.skip("gdal_polygonize.py not on PATH (Debian: apt-get install gdal-bin)")
    return exe


def run_gdal_polygonize(
    exe: str, array: np.ndarray, folder: Path, connectivity: Connectivity
) -> tuple[np.ndarray, np.ndarray]:
    """Polygonize with the GDAL CLI; return (geometries, class values)."""
    tif = write_tif(folder / "gdal_in.tif", array)
    out = folder / "gdal_out.gpkg"
    eight = ["-8"] if connectivity == Connectivity.EIGHT else []
    subprocess.run(
        [exe, "-q", *eight, str(tif), "-f", "GPKG", str(out), "out", "DN"],
        check=True,
        capture_output=True,
    )
    _, _, wkb, fields = ogr_read(out, layer="out")
    return shapely.from_wkb(wkb), np.asarray(fields[0])


@pytest.mark.parametrize("connectivity", CONNECTIVITIES, ids=["4", "8"])
@pytest.mark.parametrize("name", list(RASTERS))
def test_same_polygons_as_gdal_polygonize(
    name: str, connectivity: Connectivity, gdal_polygonize: str, tmp_path: Path
) -> None:
    array = RASTERS[name]()
    table = polygonize_array(array, TRANSFORM, connectivity=connectivity)
    gdal_geoms, gdal_values = run_gdal_polygonize(gdal_polygonize, array, tmp_path, connectivity)

    assert len(table) == len(gdal_geoms)
    if not len(table):
        return
    # GDAL's 8-connected rings touch themselves at pixel corners (OGC-invalid); repair them
    # the same way for the comparison. The covered point set does not change.
    gdal_geoms = shapely.make_valid(gdal_geoms, method="structure", keep_collapsed=False)
    tree = shapely.STRtree(gdal_geoms)
    ours_idx, gdal_idx = tree.query(shapely.point_on_surface(table.geometry), predicate="within")
    assert np.array_equal(np.sort(ours_idx), np.arange(len(table)))  # every polygon matched
    assert len(set(gdal_idx.tolist())) == len(table)  # ... to a distinct GDAL polygon
    assert np.array_equal(gdal_values[gdal_idx], table.class_id[ours_idx])
    sym_diff = shapely.area(
        shapely.symmetric_difference(table.geometry[ours_idx], gdal_geoms[gdal_idx])
    )
    assert sym_diff.max() <= 1e-9 * PIXEL_AREA


# --------------------------------------------------------------------------- invariants


@pytest.mark.parametrize("connectivity", CONNECTIVITIES, ids=["4", "8"])
@pytest.mark.parametrize("name", list(RASTERS))
def test_polygon_invariants(name: str, connectivity: Connectivity) -> None:
    array = RASTERS[name]()
    table = polygonize_array(array, TRANSFORM, connectivity=connectivity)
    _, component_class = label_components(array, connectivity=connectivity)
    assert len(table) == len(component_class)

    assert shapely.is_valid(table.geometry).all()
    types = set(shapely.get_type_id(table.geometry).tolist())
    if connectivity == Connectivity.FOUR:
        assert types <= {shapely.GeometryType.POLYGON}
    else:
        assert types <= {shapely.GeometryType.POLYGON, shapely.GeometryType.MULTIPOLYGON}

    areas = shapely.area(table.geometry)
    np.testing.assert_allclose(areas, table.pixel_count * PIXEL_AREA, rtol=1e-12)
    for value in np.unique(array[array != ND]):
        in_class = table.class_id == value
        np.testing.assert_allclose(
            areas[in_class].sum(), np.count_nonzero(array == value) * PIXEL_AREA, rtol=1e-12
        )
        assert table.pixel_count[in_class].sum() == np.count_nonzero(array == value)
    assert ND not in table.class_id

    # Nodata is never vectorized: no polygon covers a nodata pixel centre.
    xs, ys = pixel_centres(array.shape, TRANSFORM)
    nodata = array == ND
    if len(table) and nodata.any():
        hits = shapely.STRtree(table.geometry).query(
            shapely.points(xs[nodata], ys[nodata]), predicate="intersects"
        )
        assert hits.size == 0
    # Regions do not overlap: their union covers exactly the valid pixels.
    if len(table):
        np.testing.assert_allclose(
            shapely.union_all(table.geometry).area, (~nodata).sum() * PIXEL_AREA, rtol=1e-12
        )


def test_holes_and_islands_preserved() -> None:
    array = ring_with_island()
    table = polygonize_array(array, TRANSFORM)
    by_class = {int(c): g for c, g in zip(table.class_id, table.geometry, strict=True)}
    assert sorted(by_class) == [0, 1, 2, 3]
    ring, hole, island = by_class[1], by_class[2], by_class[3]
    assert len(ring.interiors) == 2  # the class-2 hole and the nodata pixel
    assert len(hole.interiors) == 1  # the island
    assert shapely.Polygon(ring.exterior).contains(island)
    assert not ring.intersects(island)
    assert shapely.Polygon(hole.interiors[0]).equals(island)
    assert ring.area == np.count_nonzero(array == 1) * PIXEL_AREA


def test_corner_touches_depend_on_connectivity() -> None:
    array = checkerboard()
    four = polygonize_array(array, TRANSFORM, connectivity=Connectivity.FOUR)
    eight = polygonize_array(array, TRANSFORM, connectivity=Connectivity.EIGHT)
    assert len(four) == array.size
    assert len(eight) == 2
    assert set(shapely.get_type_id(eight.geometry).tolist()) == {shapely.GeometryType.MULTIPOLYGON}


@pytest.mark.parametrize("connectivity", CONNECTIVITIES, ids=["4", "8"])
@pytest.mark.parametrize("name", ["noise", "landscape", "diagonal_touches"])
def test_mean_confidence_is_mean_over_region_pixels(name: str, connectivity: Connectivity) -> None:
    array = RASTERS[name]()
    rng = np.random.default_rng(3)
    confidence = rng.integers(0, 101, array.shape).astype(np.float64)
    confidence[rng.random(array.shape) < 0.1] = np.nan  # unknown pixels are skipped
    table = polygonize_array(array, TRANSFORM, connectivity=connectivity, confidence=confidence)
    xs, ys = pixel_centres(array.shape, TRANSFORM)
    for geom, mean, count in zip(
        table.geometry, table.mean_confidence, table.pixel_count, strict=True
    ):
        bounds = shapely.bounds(geom)
        near = (xs > bounds[0]) & (xs < bounds[2]) & (ys > bounds[1]) & (ys < bounds[3])
        inside = np.zeros(array.shape, dtype=bool)
        inside[near] = shapely.contains_xy(geom, xs[near], ys[near])
        assert inside.sum() == count
        values = confidence[inside]
        values = values[np.isfinite(values)]
        if values.size:
            assert mean == pytest.approx(values.mean(), rel=1e-12)
        else:
            assert np.isnan(mean)


def test_polygonize_labels_refuses_ids_that_are_not_4_connected() -> None:
    labels = np.array([[1, 0], [0, 1]], dtype=np.int32)  # id 1 joined only at a corner
    with pytest.raises(RuntimeError, match="2 polygons for 1 connected regions"):
        polygonize_labels(labels, TRANSFORM)


def test_repair_keeps_area_of_corner_touching_rings() -> None:
    # The ring GDAL writes for two pixels joined at a corner with 8-connectivity.
    bowtie = shapely.Polygon([(0, 0), (0, 1), (1, 1), (1, 2), (2, 2), (2, 1), (1, 1), (1, 0)])
    assert not bowtie.is_valid
    repaired = _repair_if_invalid(np.array([bowtie, shapely.box(5, 5, 6, 6)], dtype=object))
    assert shapely.is_valid(repaired).all()
    assert repaired[0].geom_type == "MultiPolygon"
    assert repaired[0].area == 2.0
    assert repaired[1].equals(shapely.box(5, 5, 6, 6))


def test_no_confidence_gives_nan() -> None:
    table = polygonize_array(noise(), TRANSFORM)
    assert np.isnan(table.mean_confidence).all()


def test_bad_arrays_are_refused() -> None:
    with pytest.raises(ConfigError, match="2-D integer"):
        polygonize_array(np.zeros((4, 4), dtype=np.float32), TRANSFORM)
    with pytest.raises(ConfigError, match="confidence shape"):
        polygonize_array(noise(), TRANSFORM, confidence=np.zeros((3, 3)))


# --------------------------------------------------------------------------- areas in metres


def test_area_in_feet_crs_is_converted_to_square_metres() -> None:
    crs = pyproj.CRS.from_epsg(2227)  # NAD83 / California zone 3 (ftUS)
    transform = Affine(10.0, 0.0, 6_000_000.0, 0.0, -10.0, 2_100_000.0)  # 10 ftUS pixels
    table = polygonize_array(ring_with_island(), transform)
    area, perimeter = measure_m(table.geometry, crs)
    ft_us = 1200 / 3937
    np.testing.assert_allclose(area, table.pixel_count * (10 * ft_us) ** 2, rtol=1e-12)
    np.testing.assert_allclose(perimeter, shapely.length(table.geometry) * ft_us, rtol=1e-12)


def test_area_in_geographic_crs_is_geodesic() -> None:
    crs = pyproj.CRS.from_epsg(4326)
    transform = Affine(0.001, 0.0, 10.0, 0.0, -0.001, 46.0)
    array = np.zeros((10, 10), dtype=np.uint8)
    array[3:6, 3:6] = 1  # a hole in class 0
    table = polygonize_array(array, transform)
    area, perimeter = measure_m(table.geometry, crs)
    geod = pyproj.Geod(ellps="WGS84")

    def box_area_perimeter(row0: int, row1: int, col0: int, col1: int) -> tuple[float, float]:
        (x0, x1), (y0, y1) = map_xy(transform, [col0, col1], [row0, row1])
        a, p = geod.polygon_area_perimeter([x0, x1, x1, x0], [y0, y0, y1, y1])
        return abs(a), p

    outer_a, outer_p = box_area_perimeter(0, 10, 0, 10)
    hole_a, hole_p = box_area_perimeter(3, 6, 3, 6)
    by_class = dict(zip(table.class_id.tolist(), range(len(table)), strict=True))
    assert area[by_class[0]] == pytest.approx(outer_a - hole_a, rel=1e-9)
    assert perimeter[by_class[0]] == pytest.approx(outer_p + hole_p, rel=1e-9)
    assert area[by_class[1]] == pytest.approx(hole_a, rel=1e-9)
    assert 0.85e6 < outer_a < 0.87e6  # 100 pixels of ~77.5 m x ~111 m at 46°N


# --------------------------------------------------------------------------- vectorize_raster


@pytest.fixture
def scene(tmp_path: Path) -> tuple[Path, Path, np.ndarray, np.ndarray]:
    array = landscape()
    array[10:20, 250:270] = 7  # a class value missing from the class list
    rng = np.random.default_rng(11)
    confidence = rng.integers(0, 101, array.shape).astype(np.uint8)
    confidence[array == ND] = 255
    classes_tif = write_tif(tmp_path / "classes.tif", array)
    confidence_tif = write_tif(tmp_path / "confidence.tif", confidence, nodata=255)
    return classes_tif, confidence_tif, array, confidence


def test_vectorize_raster_writes_attributed_styled_layer(
    scene: tuple[Path, Path, np.ndarray, np.ndarray], tmp_path: Path
) -> None:
    classes_tif, confidence_tif, array, confidence = scene
    out = tmp_path / "out" / "polygons.gpkg"
    out.parent.mkdir()
    extra = {"scene": "S2B_20240601_T33TWN", "model_sha256": "ab" * 32}
    result = vectorize_raster(
        classes_tif,
        out,
        classes=CLASSES,
        confidence_path=confidence_tif,
        extra_attributes=extra,
    )
    assert result.path == out
    assert sorted(p.name for p in out.parent.iterdir()) == ["polygons.gpkg", "polygons.qml"]

    info = pyogrio.read_info(out, layer="landcover")
    assert info["crs"] == UTM
    assert info["geometry_type"] == "Polygon"
    assert info["features"] == result.n_polygons
    assert list(info["fields"]) == [*BUILTIN_FIELDS, "scene", "model_sha256"]
    types = dict(zip(info["fields"], info["ogr_types"], strict=True))
    assert types["class_id"] == "OFTInteger"
    assert types["class_name"] == types["scene"] == "OFTString"
    assert types["area_m2"] == types["perimeter_m"] == types["mean_confidence"] == "OFTReal"

    _, _, wkb, fields = ogr_read(out, layer="landcover")
    columns = dict(zip(info["fields"], fields, strict=True))
    geoms = shapely.from_wkb(wkb)
    table = polygonize_array(array, TRANSFORM, confidence=np.where(array == ND, np.nan, confidence))
    assert np.array_equal(columns["class_id"], table.class_id)
    names = {c.id: c.name for c in CLASSES} | {7: "class 7"}
    assert list(columns["class_name"]) == [names[c] for c in table.class_id]
    np.testing.assert_allclose(columns["area_m2"], table.pixel_count * PIXEL_AREA, rtol=1e-12)
    np.testing.assert_allclose(columns["perimeter_m"], shapely.length(geoms), rtol=1e-12)
    np.testing.assert_allclose(columns["mean_confidence"], table.mean_confidence, rtol=1e-12)
    assert ((columns["mean_confidence"] >= 0) & (columns["mean_confidence"] <= 100)).all()
    assert set(columns["scene"]) == {extra["scene"]}
    assert set(columns["model_sha256"]) == {extra["model_sha256"]}

    for cid in [*range(5), 7]:
        in_class = table.class_id == cid
        assert result.polygons_per_class[cid] == in_class.sum()
        assert result.area_m2_per_class[cid] == pytest.approx(
            np.count_nonzero(array == cid) * PIXEL_AREA, rel=1e-12
        )
    assert sum(result.polygons_per_class.values()) == result.n_polygons

    qml = ET.parse(out.with_suffix(".qml")).getroot()
    labels = {c.get("value"): c.get("label") for c in qml.iter("category")}
    assert labels == {str(k): v for k, v in names.items()}


def test_vectorize_raster_eight_connected_is_multipolygon_layer(
    scene: tuple[Path, Path, np.ndarray, np.ndarray], tmp_path: Path
) -> None:
    classes_tif, _, array, _ = scene
    result = vectorize_raster(
        classes_tif, tmp_path / "p8.gpkg", classes=CLASSES, connectivity=Connectivity.EIGHT
    )
    info = pyogrio.read_info(result.path, layer="landcover")
    assert info["geometry_type"] == "MultiPolygon"
    assert info["features"] == result.n_polygons
    assert result.n_polygons == len(
        polygonize_array(array, TRANSFORM, connectivity=Connectivity.EIGHT)
    )
    _, _, _, fields = ogr_read(result.path, layer="landcover")
    assert np.isnan(fields[list(info["fields"]).index("mean_confidence")]).all()


def test_vectorize_raster_all_nodata_gives_empty_layer(tmp_path: Path) -> None:
    tif = write_tif(tmp_path / "classes.tif", all_nodata())
    result = vectorize_raster(tif, tmp_path / "p.gpkg", classes=CLASSES)
    assert result.n_polygons == 0
    assert result.polygons_per_class == {c.id: 0 for c in CLASSES}
    info = pyogrio.read_info(result.path, layer="landcover")
    assert info["features"] == 0
    assert list(info["fields"]) == list(BUILTIN_FIELDS)


def test_vectorize_raster_uses_mask_not_only_255(tmp_path: Path) -> None:
    """A foreign class raster with nodata=0: those pixels are not vectorized."""
    array = ring_with_island()
    array[array == ND] = 0
    tif = write_tif(tmp_path / "classes.tif", array, nodata=0)
    result = vectorize_raster(tif, tmp_path / "p.gpkg", classes=CLASSES)
    assert 0 not in {k for k, v in result.polygons_per_class.items() if v}
    assert result.n_polygons == 3


def test_vectorize_raster_refuses_bad_inputs(tmp_path: Path) -> None:
    out = tmp_path / "p.gpkg"
    no_crs = write_tif(tmp_path / "nocrs.tif", noise(), crs=None)
    with pytest.raises(SceneError, match=r"nocrs\.tif.*no CRS.*gdal_edit"):
        vectorize_raster(no_crs, out, classes=CLASSES)

    garbage = tmp_path / "garbage.tif"
    garbage.write_bytes(b"not a tiff at all")
    with pytest.raises(SceneError, match=r"garbage\.tif.*cannot be read"):
        vectorize_raster(garbage, out, classes=CLASSES)
    with pytest.raises(SceneError, match=r"missing\.tif"):
        vectorize_raster(tmp_path / "missing.tif", out, classes=CLASSES)

    good = write_tif(tmp_path / "classes.tif", noise())
    small = write_tif(tmp_path / "conf.tif", np.zeros((5, 5), np.uint8), nodata=255)
    with pytest.raises(SceneError, match=r"conf\.tif.*grid"):
        vectorize_raster(good, out, classes=CLASSES, confidence_path=small)

    floats = write_tif(tmp_path / "floats.tif", noise().astype(np.float32), nodata=None)
    with pytest.raises(SceneError, match=r"floats\.tif.*float32"):
        vectorize_raster(floats, out, classes=CLASSES)

    with pytest.raises(ConfigError, match="area_m2"):
        vectorize_raster(good, out, classes=CLASSES, extra_attributes={"area_m2": "x"})
    assert not out.exists()
