"""Commands that map land cover: `run`, `vectorize`, `demo`, `synth` (options -> library calls)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer

from geoseg.cli.errors import handles_errors
from geoseg.cli.options import (
    BatchSizeOption,
    BlockSizeOption,
    ConnectivityOption,
    DaskAddressOption,
    DeviceOption,
    MinAreaOption,
    OverlapOption,
    PrecisionOption,
    SimplifyOption,
    TileSizeOption,
    TtaOption,
    WorkersOption,
    settings_from_options,
)
from geoseg.cli.rich import err_console, out_console
from geoseg.models import DEMO_MODEL


@handles_errors
def run(
    *,
    aoi: Annotated[Path, typer.Option(help="AOI polygons (GeoJSON, GPKG, SHP), any CRS.")],
    scenes: Annotated[
        list[str] | None,
        typer.Option(
            help="Scene: raster file, folder, glob, STAC item / ItemCollection / ndjson file or "
            "URL, https:// or s3:// raster; repeat for several. Default: ./scenes (without "
            "--stac-api)."
        ),
    ] = None,
    aoi_layer: Annotated[
        str | None, typer.Option(help="The AOI layer of a file with several (GeoPackage).")
    ] = None,
    stac_api: Annotated[
        str | None, typer.Option(help="Search this STAC API for items intersecting the AOI.")
    ] = None,
    collection: Annotated[
        list[str] | None, typer.Option(help="STAC collection to search; repeat for several.")
    ] = None,
    datetime: Annotated[
        str | None,
        typer.Option(help="Search window: 2024-06-01/2024-08-31, or one date (RFC 3339)."),
    ] = None,
    max_cloud: Annotated[
        float | None, typer.Option(help="Use items with at most this eo:cloud_cover (%).")
    ] = None,
    limit: Annotated[
        int | None, typer.Option(min=1, help="Use the newest N items the search found.")
    ] = None,
    cloud_mask: Annotated[
        str,
        typer.Option(
            help="auto: the item's SCL / QA_PIXEL; none; or ASSET:V1,V2,... values to drop."
        ),
    ] = "auto",
    resample: Annotated[
        bool,
        typer.Option(
            "--resample/--no-resample",
            help="Resample scenes at another pixel size to the model GSD (else refuse them).",
        ),
    ] = True,
    model: Annotated[
        list[Path] | None,
        typer.Option(
            help="Model package (.geoseg); repeat to average an ensemble. Default: demo model."
        ),
    ] = None,
    out: Annotated[Path, typer.Option(help="Output folder.")] = Path("geoseg_out"),
    mosaic: Annotated[
        bool,
        typer.Option(
            help="Also merge the scenes into one map of the AOI in OUT/mosaic/ (classes, "
            "confidence, source, polygons)."
        ),
    ] = False,
    crs: Annotated[
        str | None,
        typer.Option(
            help="The mosaic's projected CRS, e.g. EPSG:32633 (default: the AOI's UTM zone)."
        ),
    ] = None,
    prefer: Annotated[
        str,
        typer.Option(
            help="Where scenes overlap in the mosaic: confidence (the most confident valid "
            "pixel) or newest (the newest scene's valid pixel)."
        ),
    ] = "confidence",
    device: DeviceOption = "auto",
    precision: PrecisionOption = "auto",
    batch_size: BatchSizeOption = None,
    tile_size: TileSizeOption = None,
    overlap: OverlapOption = None,
    connectivity: ConnectivityOption = 4,
    tta: TtaOption = False,
    reader_threads: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="Threads reading tiles (one GDAL handle each); default one per CPU core, 2 to 8.",
        ),
    ] = None,
    compile_model: Annotated[
        bool, typer.Option("--compile", help="torch.compile the model (slow start, faster run).")
    ] = False,
    block_size: BlockSizeOption = None,
    workers: WorkersOption = None,
    dask_address: DaskAddressOption = None,
    min_area: MinAreaOption = 0.0,
    simplify: SimplifyOption = 0.0,
) -> None:
    """Segment the scenes under an AOI: class + confidence COGs and polygons per scene."""
    from geoseg.cli.rich import RichProgress, print_report
    from geoseg.config import RunSettings
    from geoseg.pipeline.run import run as run_pipeline

    settings = settings_from_options(
        RunSettings,
        {"models": "model", "stac": "stac_api"},
        aoi=aoi,
        aoi_layer=aoi_layer,
        scenes=scenes or ([] if stac_api else ["scenes"]),
        stac=stac_query(stac_api, collection, datetime, max_cloud, limit),
        cloud_mask=cloud_mask,
        resample=resample,
        models=model or [DEMO_MODEL],
        out=out,
        mosaic=mosaic,
        crs=crs,
        prefer=prefer,
        device=device,
        precision=precision,
        batch_size=batch_size,
        tile_size=tile_size,
        overlap=overlap,
        connectivity=connectivity,
        tta=tta,
        reader_threads=reader_threads,
        compile=compile_model,
        workers=workers,
        dask_address=dask_address,
        min_area=min_area,
        simplify=simplify,
        **({} if block_size is None else {"block_size": block_size}),
    )
    with RichProgress(err_console) as progress:
        report = run_pipeline(settings, progress)
    print_report(report, out_console)


def stac_query(
    api: str | None,
    collections: list[str] | None,
    datetime: str | None,
    max_cloud: float | None,
    limit: int | None,
) -> dict[str, object] | None:
    """The ``--stac-api`` options as `StacQuery` fields; refuse search options without an API."""
    from geoseg.errors import ConfigError, option

    if api is None:
        given = [
            n
            for n, v in (
                ("collection", collections),
                ("datetime", datetime),
                ("max_cloud", max_cloud),
                ("limit", limit),
            )
            if v
        ]
        if given:
            raise ConfigError(f"{option(given[0])} needs {option('stac_api')} URL to search")
        return None
    if not collections:
        raise ConfigError(f"{option('stac_api')} needs {option('collection')} NAME to search")
    return {
        "api": api,
        "collections": collections,
        "datetime": datetime,
        "max_cloud": max_cloud,
        "limit": limit,
    }


@handles_errors
def vectorize(
    classes_tif: Annotated[
        Path, typer.Argument(help="Class raster: classes.tif of geoseg run, or any integer raster.")
    ],
    *,
    out: Annotated[Path, typer.Option(help="GeoPackage to write; its .qml style goes beside it.")],
    confidence: Annotated[
        Path | None,
        typer.Option(help="Confidence raster on the same grid: adds mean_confidence."),
    ] = None,
    model: Annotated[
        Path | None,
        typer.Option(help="Model package for class names/colours and model_sha256."),
    ] = None,
    connectivity: ConnectivityOption = 4,
    block_size: BlockSizeOption = None,
    workers: WorkersOption = None,
    dask_address: DaskAddressOption = None,
    min_area: MinAreaOption = 0.0,
    simplify: SimplifyOption = 0.0,
) -> None:
    """Polygonize a class raster into a styled GeoPackage: parallel blocks, exact seams.

    Class names and colours come from --model, else from the raster (geoseg's tags or its
    colour table). Rasters larger than one block run on Dask (a local cluster by default).
    """
    from geoseg.cli.rich import RichBlockProgress, print_vectorized
    from geoseg.vectorize import DEFAULT_BLOCK_PX, VectorizeOptions, vectorize_file

    t0 = time.perf_counter()
    options = VectorizeOptions(
        block_size_px=DEFAULT_BLOCK_PX if block_size is None else block_size,
        workers=workers,
        dask_address=dask_address,
        min_area_m2=min_area,
        simplify_m=simplify,
    )
    with RichBlockProgress(err_console) as on_block:
        result = vectorize_file(
            classes_tif,
            out,
            confidence_path=confidence,
            model_path=model,
            connectivity=connectivity,
            options=options,
            on_block=on_block,
        )
    print_vectorized(result, time.perf_counter() - t0, out_console)


@handles_errors
def demo(
    *,
    out: Annotated[Path, typer.Option(help="Output folder.")] = Path("demo_out"),
    size: Annotated[int, typer.Option(help="Scene width and height in pixels.")] = 1024,
    seed: Annotated[int, typer.Option(help="Seed of the synthetic landscape.")] = 7,
    device: DeviceOption = "auto",
) -> None:
    """Generate a synthetic scene + AOI and run the whole pipeline with the shipped model."""
    from geoseg.cli.rich import RichProgress, print_report
    from geoseg.demo import run_demo

    err_console.print(f"generating a {size}x{size} px synthetic scene (seed {seed}) ...")
    with RichProgress(err_console) as progress:
        result = run_demo(out, size_px=size, seed=seed, device=device, progress=progress)
    out_console.print(f"inputs: {result.inputs.image_path.parent}")
    print_report(result.report, out_console)
    out_console.print(
        f"agreement with the synthetic labels inside the AOI: mIoU {result.miou:.3f}, "
        f"overall accuracy {result.overall_accuracy:.3f}"
    )
    out_console.print(
        "rerun on the same inputs: geoseg run "
        f"--aoi {result.inputs.aoi_path} --scenes {result.inputs.image_path} --out {out}"
    )


@handles_errors
def synth(
    *,
    out: Annotated[Path, typer.Option(help="Folder for scene.tif, labels.tif, aoi.geojson.")],
    size: Annotated[int, typer.Option(help="Width and height in pixels.")] = 1024,
    seed: Annotated[int, typer.Option(help="Seed of the landscape.")] = 1,
    nodata_margin: Annotated[int, typer.Option(help="Nodata margin in px along edges.")] = 0,
    epsg: Annotated[int, typer.Option(help="EPSG code of the (UTM) CRS.")] = 32633,
) -> None:
    """Write a synthetic labelled scene (for training, tests and benchmarks)."""
    from geoseg.synthetic import write_synthetic_scene

    scene = write_synthetic_scene(
        out, size_px=size, seed=seed, nodata_margin_px=nodata_margin, epsg=epsg
    )
    out_console.print(f"{scene.image_path}\n{scene.labels_path}\n{scene.aoi_path}")
