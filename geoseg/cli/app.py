"""The `geoseg` command line: commands only parse options and call library functions.

A `GeosegError` becomes one red line on stderr and a non-zero exit code (a traceback only with
``--debug``); Ctrl-C cancels cleanly with exit code 130 and leaves no partial outputs.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, ParamSpec, TypeVar

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from geoseg.errors import GeosegError

P = ParamSpec("P")
R = TypeVar("R")

app = typer.Typer(
    name="geoseg",
    help="Land-cover maps from satellite and aerial GeoTIFF scenes.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
model_app = typer.Typer(help="Inspect model packages.", no_args_is_help=True)
app.add_typer(model_app, name="model")

err_console = Console(stderr=True, soft_wrap=True)
out_console = Console(soft_wrap=True)


# Options shared by several commands, declared once.
DeviceOption = Annotated[str, typer.Option(help="auto, cpu or cuda.")]
BatchSizeOption = Annotated[
    int | None, typer.Option(help="Tiles per batch (default: from the package).")
]
TileSizeOption = Annotated[
    int | None, typer.Option(help="Tile size in px (default: from the package).")
]
OverlapOption = Annotated[
    int | None, typer.Option(help="Tile overlap in px (default: from the package).")
]
TtaOption = Annotated[
    bool, typer.Option(help="Test-time augmentation: average the 8 flips/rotations.")
]


class _ConsoleWarnings(logging.Handler):
    """Library warnings (``geoseg.*`` loggers) as one yellow line each on the error console."""

    def __init__(self, console: Console):
        super().__init__(logging.WARNING)
        self._console = console

    def emit(self, record: logging.LogRecord) -> None:
        self._console.print(
            f"[yellow]warning:[/] {escape(record.getMessage())}", highlight=False, soft_wrap=True
        )


def show_library_warnings(console: Console) -> None:
    """Print geoseg's logged warnings (e.g. a repaired AOI) once each, on stderr."""
    logger = logging.getLogger("geoseg")  # with a handler here, logging's last resort is quiet
    if not any(isinstance(h, _ConsoleWarnings) for h in logger.handlers):
        logger.addHandler(_ConsoleWarnings(console))


def _debug_requested() -> bool:
    return os.environ.get("GEOSEG_DEBUG", "") not in ("", "0")


def handles_errors(func: Callable[P, R]) -> Callable[P, R]:
    """Turn library errors and Ctrl-C into one line and an exit code."""

    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return func(*args, **kwargs)
        except GeosegError as exc:
            if _debug_requested():
                traceback.print_exc()
            err_console.print(
                f"[bold red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True
            )
            raise typer.Exit(exc.exit_code) from None
        except KeyboardInterrupt:
            err_console.print("[yellow]cancelled:[/] no partial outputs were kept")
            raise typer.Exit(130) from None

    return wrapper


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
    connectivity: Annotated[
        int, typer.Option(help="Polygon connectivity, 4 or 8 (as gdal_polygonize).")
    ] = 4,
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
    block_size: Annotated[
        int | None, typer.Option(help="Vectorize in blocks of this many px (default 2048).")
    ] = None,
    workers: Annotated[
        int | None,
        typer.Option(
            help="Dask worker processes vectorizing scenes larger than one block "
            "(default: one per CPU core; 0: no Dask)."
        ),
    ] = None,
    dask_address: Annotated[
        str | None,
        typer.Option(help="Vectorize on this running Dask scheduler (tcp://host:8786)."),
    ] = None,
    min_area: Annotated[
        float,
        typer.Option(help="Merge regions smaller than this (m²) into their largest neighbour."),
    ] = 0.0,
    simplify: Annotated[
        float, typer.Option(help="Simplify polygon boundaries with this tolerance (m); 0 = none.")
    ] = 0.0,
) -> None:
    """Segment the scenes under an AOI: class + confidence COGs and polygons per scene."""
    from geoseg.config import RunSettings
    from geoseg.pipeline.run import run as run_pipeline

    settings = _settings(
        RunSettings,
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
    print_report(report)


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
    connectivity: Annotated[
        int, typer.Option(help="Polygon connectivity, 4 or 8 (as gdal_polygonize).")
    ] = 4,
    block_size: Annotated[int | None, typer.Option(help="Block size in px (default 2048).")] = None,
    workers: Annotated[
        int | None,
        typer.Option(help="Local Dask worker processes (default: one per CPU core; 0: no Dask)."),
    ] = None,
    dask_address: Annotated[
        str | None,
        typer.Option(help="Run on this Dask scheduler instead of a local one (tcp://host:8786)."),
    ] = None,
    min_area: Annotated[
        float,
        typer.Option(help="Merge regions smaller than this (m²) into their largest neighbour."),
    ] = 0.0,
    simplify: Annotated[
        float,
        typer.Option(help="Simplify boundaries with this tolerance (m); shared edges stay shared."),
    ] = 0.0,
) -> None:
    """Polygonize a class raster into a styled GeoPackage: parallel blocks, exact seams.

    Class names and colours come from --model, else from the raster (geoseg's tags or its
    colour table). Rasters larger than one block run on Dask (a local cluster by default).
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    from geoseg.vectorize import DEFAULT_BLOCK_PX, VectorizeOptions, vectorize_file

    t0 = time.perf_counter()
    options = VectorizeOptions(
        block_size_px=DEFAULT_BLOCK_PX if block_size is None else block_size,
        workers=workers,
        dask_address=dask_address,
        min_area_m2=min_area,
        simplify_m=simplify,
    )
    columns = (TextColumn("vectorizing"), BarColumn(), MofNCompleteColumn(), TextColumn("blocks"))
    bar = Progress(*columns, console=err_console, transient=True)
    task = bar.add_task("blocks", total=None)

    started: list[bool] = []

    def on_block(done: int, total: int) -> None:
        if not started:  # shown once work runs: an early error stays one clean line
            bar.start()
            started.append(True)
        bar.update(task, completed=done, total=total)

    try:
        result = vectorize_file(
            classes_tif,
            out,
            confidence_path=confidence,
            model_path=model,
            connectivity=connectivity,
            options=options,
            on_block=on_block,
        )
    finally:
        if started:
            bar.stop()
    where = f"{result.dask_workers} Dask workers" if result.dask_workers else "this process"
    per_class = ", ".join(
        f"{name} {result.polygons_per_class[cid]} ({result.area_m2_per_class[cid] / 1e6:.3g} km²)"
        for cid, name in sorted(result.class_names.items())
        if result.polygons_per_class.get(cid)
    )
    out_console.print(
        f"[green]wrote[/] {result.n_polygons} polygons to {result.path} (+ .qml) in "
        f"{time.perf_counter() - t0:.1f}s: {result.blocks} block(s) on {where}; {per_class}",
        highlight=False,
        soft_wrap=True,
    )


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
    from geoseg.demo import run_demo

    err_console.print(f"generating a {size}x{size} px synthetic scene (seed {seed}) ...")
    with RichProgress(err_console) as progress:
        result = run_demo(out, size_px=size, seed=seed, device=device, progress=progress)
    out_console.print(f"inputs: {result.inputs.image_path.parent}")
    print_report(result.report)
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
    from geoseg.models.package import load_package, package_summary

    pkg = load_package(package)
    summary = package_summary(pkg)
    if as_json:
        out_console.print_json(json.dumps(summary))
        return
    meta = pkg.metadata
    out_console.print(f"[bold]{meta.name}[/]  {pkg.path}")
    out_console.print(f"sha256        {pkg.sha256}")
    out_console.print(f"architecture  {meta.architecture.name} {meta.architecture.args}")
    out_console.print(f"input         {len(meta.bands)} bands, {meta.dtype}, GSD {meta.gsd_m:g} m")
    out_console.print(
        f"tiles         {meta.tile.size_px} px, overlap {meta.tile.overlap_px} px, "
        f"batch {meta.tile.batch_size}"
    )
    bands = Table("band", "index", "mean", "std", title="bands and normalization")
    for b, m, s in zip(meta.bands, meta.normalization.mean, meta.normalization.std, strict=True):
        bands.add_row(b.name, str(b.index), f"{m:.2f}", f"{s:.2f}")
    out_console.print(bands)
    classes = Table("id", "class", "colour", title="classes")
    iou = meta.metrics.get("validation_iou", {})
    if iou:
        classes.add_column("val IoU")
    for c in meta.classes:
        row = [str(c.id), c.name, f"[{c.color}]■■[/] {c.color}"]
        if iou:
            row.append(f"{iou.get(c.name, float('nan')):.3f}")
        classes.add_row(*row)
    out_console.print(classes)
    for key, value in meta.metrics.items():
        if not isinstance(value, dict):
            out_console.print(f"{key:<28} {value:.4f}" if isinstance(value, float) else value)
    if meta.training:
        short = {k: v for k, v in meta.training.items() if k != "history"}
        out_console.print(f"training      {json.dumps(short)}")


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
        bool, typer.Option("--resume", help="Continue from the last checkpointed epoch.")
    ] = False,
    threads: Annotated[int | None, typer.Option(help="CPU threads for torch.")] = None,
) -> None:
    """Train a segmentation model on labelled scenes and write a model package."""
    from geoseg.cli.rich import RichTrainProgress
    from geoseg.training.loop import train as train_model
    from geoseg.training.settings import load_train_settings

    def numbers(text: str | None, kind: type) -> list[Any] | None:
        if text is None:
            return None
        try:
            return [kind(v) for v in text.split(",") if v.strip()]
        except ValueError:
            raise typer.BadParameter(f"{text!r}: expected comma-separated numbers") from None

    mapping = None
    if label_map is not None:
        try:
            mapping = {int(k): int(v) for k, v in (p.split("=") for p in label_map.split(",") if p)}
        except ValueError:
            raise typer.BadParameter(f"--label-map {label_map!r}: write e.g. 11=1,12=1") from None
    overrides = {
        "image": image,
        "labels": labels,
        "out": out,
        "window": window,
        "classes": classes,
        "label_map": mapping,
        "label_nodata": label_nodata,
        "class_column": class_column,
        "bands": numbers(bands, int),
        "band_names": band_names.split(",") if band_names else None,
        "arch": arch,
        "encoder": encoder,
        "width": width,
        "decoder_channels": numbers(decoder_channels, int),
        "loss": loss,
        "class_weighting": class_weighting,
        "weight_power": weight_power,
        "max_class_weight": max_class_weight,
        "focal_gamma": focal_gamma,
        "focal_alpha": numbers(focal_alpha, float),
        "epochs": epochs,
        "steps_per_epoch": steps_per_epoch,
        "batch_size": batch_size,
        "tile_size": tile_size,
        "lr": lr,
        "weight_decay": weight_decay,
        "lr_patience": lr_patience,
        "early_stopping": early_stopping,
        "monitor": monitor,
        "sampling": sampling,
        "val_fraction": val_fraction,
        "val_block": val_block,
        "augment": augment,
        "seed": seed,
        "device": device,
        "name": name,
        "checkpoint_dir": checkpoint_dir,
        "resume": resume or None,
        "threads": threads,
    }
    settings = load_train_settings(config, overrides)
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
    threads: Annotated[int | None, typer.Option(help="CPU threads for torch.")] = None,
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


def load_classes(path: Path | None, labels: Path) -> list[Any]:
    """Classes from a JSON/YAML file, or from the GEOSEG_CLASSES tag of a label raster."""
    from geoseg.errors import ConfigError
    from geoseg.io.outputs import classes_from_tags
    from geoseg.training.labels import read_class_list

    if path is not None:
        return list(read_class_list(path))
    found = classes_from_tags(labels)
    if found is None:
        raise ConfigError(f"{labels}: has no GEOSEG_CLASSES tag; pass --classes classes.json")
    return found


def default_model_path() -> Path:
    """The small demo package shipped inside geoseg."""
    from importlib.resources import files

    return Path(str(files("geoseg") / "data" / "demo.geoseg"))


def _settings(cls: type[R], **values: Any) -> R:
    from pydantic import ValidationError

    from geoseg.errors import ConfigError

    try:
        return cls(**values)
    except ValidationError as exc:
        first = exc.errors()[0]
        option = "--" + str(first["loc"][0]).replace("_", "-").removesuffix("s")
        raise ConfigError(f"{option}: {first['msg']}") from None


def print_report(report: Any) -> None:
    """Output paths and the one-line summary of a run."""
    from geoseg.io.outputs import classes_from_tags

    for scene in report.scenes:
        out_console.print(f"[bold]{scene.scene}[/]")
        for kind, path in scene.outputs.items():
            out_console.print(f"  {kind:<11} {path}")
    for mosaic in report.mosaics:
        out_console.print(f"mosaic        {mosaic}")
    out_console.print(f"run record    {report.run_json}")
    found: dict[int, int] = {}
    for scene in report.scenes:
        for k, v in scene.class_px.items():
            found[int(k)] = found.get(int(k), 0) + v
    names = {}
    if report.scenes:
        names = {
            c.id: c.name for c in classes_from_tags(Path(report.scenes[0].outputs["classes"])) or []
        }
    total = sum(found.values()) or 1
    classes_text = ", ".join(
        f"{names.get(k, k)} {100 * v / total:.1f}%" for k, v in sorted(found.items())
    )
    polygons = sum(s.polygons for s in report.scenes)
    out_console.print(
        f"[green]done[/] {len(report.scenes)} scene(s) in {report.seconds:.1f}s: "
        f"{report.pixels_per_second / 1e6:.2f} Mpx/s predicted, {polygons} polygons, "
        f"classes found: {classes_text}",
        highlight=False,
    )


class RichProgress:
    """Rich progress bars per scene: tiles done / total and pixels per second."""

    def __init__(self, console: Console):
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
        )

        self._progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("tiles"),
            TextColumn("{task.fields[rate]}"),
            TimeElapsedColumn(),
            console=console,
            transient=False,
        )
        self._tasks: dict[str, Any] = {}
        self._px_per_tile: dict[str, float] = {}
        self._started: dict[str, float] = {}

    def __enter__(self) -> RichProgress:
        self._progress.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *exc: object) -> None:
        if exc_type is not None:  # a failed run: clear the bars so the error line stands alone
            self._progress.live.transient = True
        self._progress.stop()

    def scene_started(self, scene: str, total_tiles: int, window_px: int) -> None:
        self._tasks[scene] = self._progress.add_task(scene, total=total_tiles, rate="")
        self._px_per_tile[scene] = window_px / max(total_tiles, 1)
        self._started[scene] = time.perf_counter()

    def tiles_done(self, scene: str, n: int) -> None:
        task = self._tasks[scene]
        self._progress.advance(task, n)
        done = self._progress.tasks[task].completed
        elapsed = time.perf_counter() - self._started[scene]
        rate = done * self._px_per_tile[scene] / elapsed if elapsed > 0 else 0.0
        self._progress.update(task, rate=f"{rate / 1e6:.2f} Mpx/s")

    def stage(self, scene: str, stage: str) -> None:
        self._progress.update(self._tasks[scene], description=f"{scene}: {stage}")

    def scene_finished(self, scene: str) -> None:
        if scene in self._tasks:
            self._progress.update(self._tasks[scene], description=f"{scene}: done")


def main() -> None:
    """Console-script entry point."""
    app()
