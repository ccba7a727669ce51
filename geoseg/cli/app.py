"""The `geoseg` command line: commands only declare options and call library functions.

A `GeosegError` becomes one red line on stderr and a non-zero exit code (a traceback only with
``--debug``); Ctrl-C cancels cleanly with exit code 130 and leaves no partial outputs.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Annotated

import typer

from geoseg.cli.errors import handles_errors, show_library_warnings
from geoseg.cli.options import (
    BatchSizeOption,
    BlockSizeOption,
    ConnectivityOption,
    DaskAddressOption,
    DeviceOption,
    MinAreaOption,
    OverlapOption,
    SimplifyOption,
    ThreadsOption,
    TileSizeOption,
    TtaOption,
    WorkersOption,
    default_model_path,
    given_options,
    settings_from_options,
)
from geoseg.cli.rich import err_console, out_console

app = typer.Typer(
    name="geoseg",
    help="Land-cover maps from satellite and aerial GeoTIFF scenes.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
model_app = typer.Typer(help="Inspect model packages.", no_args_is_help=True)
app.add_typer(model_app, name="model")


@app.callback()
def _root(
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks for errors.")] = False,
) -> None:
    """geoseg: tile, predict, blend, stitch and vectorize land cover for an area of interest."""
    if debug:
        os.environ["GEOSEG_DEBUG"] = "1"
    else:
        # GDAL's default handler prints errors outside rasterio's calls (e.g. when a full disk
        # makes closing a dataset fail) that geoseg reports in its one line; --debug shows them
        os.environ.setdefault("CPL_LOG", os.devnull)
    show_library_warnings(err_console)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    # GDAL's block cache defaults to 5 % of RAM; a bounded cache keeps memory bounded
    os.environ.setdefault("GDAL_CACHEMAX", "128")


@app.command()
@handles_errors
def run(
    *,
    aoi: Annotated[Path, typer.Option(help="AOI polygons (GeoJSON, GPKG, SHP), any CRS.")],
    scenes: Annotated[
        list[Path], typer.Option(help="Scene file or folder; repeat for several.")
    ] = [Path("scenes")],  # noqa: B006 - typer needs a list default
    model: Annotated[
        list[Path] | None,
        typer.Option(
            help="Model package (.geoseg); repeat to average an ensemble. Default: demo model."
        ),
    ] = None,
    out: Annotated[Path, typer.Option(help="Output folder.")] = Path("geoseg_out"),
    device: DeviceOption = "auto",
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
        {"models": "--model"},
        aoi=aoi,
        scenes=scenes,
        models=model or [default_model_path()],
        out=out,
        device=device,
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


@app.command()
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


@app.command()
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


@model_app.command("info")
@handles_errors
def model_info(
    package: Annotated[Path, typer.Argument(help="Model package (.geoseg).")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the metadata as JSON.")] = False,
) -> None:
    """Print a model package's metadata: classes, bands, normalization, GSD, metrics."""
    from geoseg.cli.rich import print_package
    from geoseg.models.package import load_package, package_summary

    pkg = load_package(package)
    summary = package_summary(pkg)
    if as_json:
        out_console.print_json(json.dumps(summary))
        return
    print_package(pkg, out_console)


@app.command()
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


@app.command()
@handles_errors
def train(
    ctx: typer.Context,
    *,
    config: Annotated[
        Path | None,
        typer.Option(help="YAML training config; its keys are these options (CLI wins)."),
    ] = None,
    image: Annotated[
        list[Path] | None, typer.Option(help="Image GeoTIFF; repeat per scene.")
    ] = None,
    labels: Annotated[
        list[Path] | None,
        typer.Option(help="Label raster on the image grid, or polygons (.gpkg/.geojson); repeat."),
    ] = None,
    out: Annotated[Path | None, typer.Option(help="Model package to write (.geoseg).")] = None,
    window: Annotated[
        list[str] | None,
        typer.Option(help="Pixel window to train on, e.g. cols=0:677 (one, or one per image)."),
    ] = None,
    classes: Annotated[
        Path | None,
        typer.Option(help="JSON/YAML list of {id, name, color}; default: GEOSEG_CLASSES tag."),
    ] = None,
    label_map: Annotated[
        str | None, typer.Option(help="Label value -> class id, e.g. '11=1,12=1,21=2'.")
    ] = None,
    label_nodata: Annotated[
        list[int] | None, typer.Option(help="Label value meaning 'no label'; repeat.")
    ] = None,
    class_column: Annotated[
        str | None, typer.Option(help="Class column of label polygons (default: class).")
    ] = None,
    bands: Annotated[
        str | None, typer.Option(help="1-based image bands, e.g. 1,2,3,4 (default: all).")
    ] = None,
    band_names: Annotated[
        str | None, typer.Option(help="Band names, e.g. blue,green,red,nir.")
    ] = None,
    arch: Annotated[
        str | None,
        typer.Option(help="Registry name: unet, fcn8s, fcn16s, fcn32s, smp-unet, ..."),
    ] = None,
    encoder: Annotated[
        str | None, typer.Option(help="smp/timm encoder for smp-* and fcn* (e.g. resnet34).")
    ] = None,
    width: Annotated[
        float | None, typer.Option(help="Width multiplier of unet / fcn* channels.")
    ] = None,
    decoder_channels: Annotated[
        str | None, typer.Option(help="Comma-separated decoder channels (smp-*).")
    ] = None,
    loss: Annotated[
        str | None, typer.Option(help="ce, weighted-ce, focal, dice or a sum like ce+dice.")
    ] = None,
    class_weighting: Annotated[
        str | None, typer.Option(help="Class weights of weighted-ce: median or inverse.")
    ] = None,
    weight_power: Annotated[
        float | None, typer.Option(help="Raise class weights to this power (0.5: sqrt).")
    ] = None,
    max_class_weight: Annotated[float | None, typer.Option(help="Clip class weights.")] = None,
    focal_gamma: Annotated[float | None, typer.Option(help="Focal loss gamma (2).")] = None,
    focal_alpha: Annotated[
        str | None, typer.Option(help="Focal loss per-class alpha, comma-separated.")
    ] = None,
    epochs: Annotated[int | None, typer.Option(help="Maximum epochs.")] = None,
    steps_per_epoch: Annotated[int | None, typer.Option(help="Batches per epoch.")] = None,
    batch_size: Annotated[int | None, typer.Option(help="Tiles per batch.")] = None,
    tile_size: Annotated[int | None, typer.Option(help="Training tile size in px.")] = None,
    lr: Annotated[float | None, typer.Option(help="Adam learning rate (1e-4).")] = None,
    weight_decay: Annotated[float | None, typer.Option(help="Adam weight decay.")] = None,
    lr_patience: Annotated[
        int | None, typer.Option(help="Epochs without val-loss gain before halving lr.")
    ] = None,
    early_stopping: Annotated[
        int | None, typer.Option(help="Stop after N epochs without gain (0: never).")
    ] = None,
    monitor: Annotated[
        str | None, typer.Option(help="What picks the best epoch: loss or miou.")
    ] = None,
    sampling: Annotated[
        str | None, typer.Option(help="Training tiles: random, grid or balanced.")
    ] = None,
    val_fraction: Annotated[
        float | None, typer.Option(help="Share of spatial blocks held out for validation.")
    ] = None,
    val_block: Annotated[
        int | None, typer.Option(help="Block size of the spatial split in px.")
    ] = None,
    augment: Annotated[
        bool | None,
        typer.Option("--augment/--no-augment", help="Flips/rotations, scale, brightness."),
    ] = None,
    seed: Annotated[int | None, typer.Option(help="Random seed.")] = None,
    device: Annotated[str | None, typer.Option(help="auto, cpu or cuda.")] = None,
    name: Annotated[str | None, typer.Option(help="Model name stored in the package.")] = None,
    checkpoint_dir: Annotated[
        Path | None, typer.Option(help="Checkpoint folder (default: <out>.ckpt/).")
    ] = None,
    resume: Annotated[
        bool | None, typer.Option("--resume", help="Continue from the last checkpointed epoch.")
    ] = None,
    threads: ThreadsOption = None,
) -> None:
    """Train a segmentation model on labelled scenes and write a model package."""
    from geoseg.cli.rich import RichTrainProgress
    from geoseg.training.loop import train as train_model
    from geoseg.training.settings import load_train_settings

    settings = load_train_settings(config, given_options(ctx, exclude={"config"}))
    with RichTrainProgress(err_console) as progress:
        result = train_model(settings, progress)
    out_console.print(
        f"wrote {result.package} in {result.seconds:.0f}s (best epoch {result.best_epoch}"
        f"{', stopped early' if result.stopped_early else ''}); "
        f"inspect it with: geoseg model info {result.package}",
        highlight=False,
    )


@app.command()
@handles_errors
def evaluate(
    *,
    model: Annotated[Path, typer.Option(help="Model package (.geoseg).")],
    image: Annotated[Path, typer.Option(help="Image GeoTIFF to predict.")],
    labels: Annotated[
        Path, typer.Option(help="Reference labels: raster on the image grid, or polygons.")
    ],
    window: Annotated[
        str | None, typer.Option(help="Pixel window to evaluate, e.g. cols=677: (default: all).")
    ] = None,
    out: Annotated[
        Path,
        typer.Option(help="Folder for report.json, confusion.png and side_by_side.png."),
    ] = Path("evaluation"),
    preview_window: Annotated[
        str | None,
        typer.Option(
            help="Pixel window of side_by_side.png, e.g. rows=0:512,cols=0:512 "
            "(default: the centre of the evaluated window, at most 1024 px a side)."
        ),
    ] = None,
    device: DeviceOption = "auto",
    tile_size: TileSizeOption = None,
    overlap: OverlapOption = None,
    batch_size: BatchSizeOption = None,
    tta: TtaOption = False,
    label_nodata: Annotated[
        list[int] | None,
        typer.Option(help="Label value meaning 'no label'; repeat (default: as trained)."),
    ] = None,
    class_column: Annotated[
        str | None, typer.Option(help="Class column of label polygons (default: as trained).")
    ] = None,
    threads: ThreadsOption = None,
) -> None:
    """Score a model against reference labels with the same tiled prediction as `run`."""
    from geoseg.cli.rich import evaluation_table
    from geoseg.training.evaluate import EvaluateSettings
    from geoseg.training.evaluate import evaluate as evaluate_model

    if threads:
        import torch

        torch.set_num_threads(threads)
    settings = EvaluateSettings(
        model=model,
        image=image,
        labels=labels,
        window=window,
        out=out,
        device=device,
        tile_size=tile_size,
        overlap=overlap,
        batch_size=batch_size,
        tta=tta,
        label_nodata=label_nodata or None,
        class_column=class_column,
        preview_window=preview_window,
    )
    with err_console.status("predicting and scoring ..."):
        report = evaluate_model(settings)
    where = f" {window}" if window else ""
    out_console.print(evaluation_table(report, f"{model.name} on {image.name}{where}"))
    for kind, path in report.files.items():
        out_console.print(f"{kind:<7} {path}")


@app.command()
@handles_errors
def deploy(
    *,
    project_dir: Annotated[
        Path, typer.Option(help="The geoseg source tree: the folder holding flows/.")
    ] = Path(),
    file: Annotated[
        Path | None, typer.Option(help="Deployments file (default: flows/prefect.yaml).")
    ] = None,
    pool: Annotated[
        str | None, typer.Option(help="Work pool for every deployment (default: the file's).")
    ] = None,
    name: Annotated[
        list[str] | None, typer.Option(help="Deploy only this deployment; repeat for several.")
    ] = None,
    param: Annotated[
        list[str] | None,
        typer.Option(help="Default flow parameter key=value (JSON values allowed); repeat."),
    ] = None,
) -> None:
    """Create or update the Prefect deployments of flows/prefect.yaml (needs a Prefect server).

    The work pool is created (type process) if missing; start a worker for it with
    `prefect worker start --pool NAME`. Prefect is imported here only: `geoseg run` never
    needs it.
    """
    import sys

    from geoseg.errors import DeploymentError

    try:
        import prefect  # noqa: F401 - only to tell a missing install apart
    except ImportError:
        raise DeploymentError(
            "geoseg deploy needs Prefect, which is not installed: pip install 'geoseg[flows]'"
        ) from None
    project = project_dir.resolve()
    if not (project / "flows" / "deploy.py").is_file():
        raise DeploymentError(
            f"{project}: has no flows/ folder; run geoseg deploy in the geoseg source tree "
            "or pass --project-dir"
        )
    if str(project) not in sys.path:
        sys.path.insert(0, str(project))
    from flows.deploy import deploy_from_file, parse_params

    deployed = deploy_from_file(
        file or project / "flows" / "prefect.yaml",
        project_dir=project,
        pool=pool,
        only=name or (),
        params=parse_params(param or []),
    )
    for d in deployed:
        when = ", ".join(d.schedules) or "on demand"
        out_console.print(
            f"[green]deployed[/] {d.full_name} (pool {d.work_pool}; {when}); "
            f"trigger: prefect deployment run '{d.full_name}'",
            highlight=False,
        )


def main() -> None:
    """Console-script entry point."""
    app()
