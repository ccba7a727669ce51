"""The `geoseg` command line: commands only parse options and call library functions.

A `GeosegError` becomes one red line on stderr and a non-zero exit code (a traceback only with
``--debug``); Ctrl-C cancels cleanly with exit code 130 and leaves no partial outputs.
"""

from __future__ import annotations

import functools
import json
import os
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, ParamSpec, TypeVar

import typer
from rich.console import Console
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
            err_console.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
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
    device: Annotated[str, typer.Option(help="auto, cpu or cuda.")] = "auto",
    batch_size: Annotated[
        int | None, typer.Option(help="Tiles per batch (default: from the package).")
    ] = None,
    tile_size: Annotated[
        int | None, typer.Option(help="Tile size in px (default: from the package).")
    ] = None,
    overlap: Annotated[
        int | None, typer.Option(help="Tile overlap in px (default: from the package).")
    ] = None,
    connectivity: Annotated[
        int, typer.Option(help="Polygon connectivity, 4 or 8 (as gdal_polygonize).")
    ] = 4,
    tta: Annotated[
        bool, typer.Option(help="Test-time augmentation: average the 8 flips/rotations.")
    ] = False,
    reader_threads: Annotated[
        int, typer.Option(min=1, help="Threads reading tiles (one GDAL handle each).")
    ] = 2,
    compile_model: Annotated[
        bool, typer.Option("--compile", help="torch.compile the model (slow start, faster run).")
    ] = False,
) -> None:
    """Segment the scenes under an AOI: class + confidence COGs and polygons per scene."""
    from geoseg.config import RunSettings
    from geoseg.pipeline import run as run_pipeline

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
    )
    with RichProgress(err_console) as progress:
        report = run_pipeline(settings, progress)
    print_report(report)


@app.command()
@handles_errors
def demo(
    *,
    out: Annotated[Path, typer.Option(help="Output folder.")] = Path("demo_out"),
    size: Annotated[int, typer.Option(help="Scene width and height in pixels.")] = 1024,
    seed: Annotated[int, typer.Option(help="Seed of the synthetic landscape.")] = 7,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda.")] = "auto",
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
    from geoseg.package import load_package, package_summary

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
    image: Annotated[list[Path], typer.Option(help="Image GeoTIFF; repeat per scene.")],
    labels: Annotated[list[Path], typer.Option(help="Label GeoTIFF on the image grid; repeat.")],
    out: Annotated[Path, typer.Option(help="Model package to write (.geoseg).")],
    classes: Annotated[
        Path | None,
        typer.Option(help="JSON list of {id, name, color}; default: the labels' GEOSEG_CLASSES."),
    ] = None,
    arch: Annotated[str, typer.Option(help="Architecture name (see the registry).")] = "smp-unet",
    encoder: Annotated[str, typer.Option(help="smp/timm encoder name.")] = "resnet34",
    decoder_channels: Annotated[
        str | None, typer.Option(help="Comma-separated decoder channels (smp-unet).")
    ] = None,
    epochs: Annotated[int, typer.Option(min=1)] = 10,
    steps_per_epoch: Annotated[int, typer.Option(min=1)] = 50,
    batch_size: Annotated[int, typer.Option(min=1)] = 8,
    tile_size: Annotated[int, typer.Option(min=32)] = 256,
    lr: Annotated[float, typer.Option(help="Adam learning rate.")] = 1e-3,
    seed: Annotated[int, typer.Option()] = 0,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda.")] = "auto",
    name: Annotated[str, typer.Option(help="Model name stored in the package.")] = "geoseg-model",
) -> None:
    """Train a segmentation model on image/label pairs and write a model package."""
    from geoseg.train import TrainConfig, TrainingPair
    from geoseg.train import train as train_model

    if len(image) != len(labels):
        raise typer.BadParameter("give one --labels per --image")
    class_list = load_classes(classes, labels[0])
    arch_args: dict[str, Any] = {"encoder_name": encoder}
    if decoder_channels:
        arch_args["decoder_channels"] = [int(c) for c in decoder_channels.split(",")]
        arch_args["encoder_depth"] = len(arch_args["decoder_channels"])
    config = TrainConfig(
        arch=arch,
        arch_args=arch_args,
        tile_px=tile_size,
        batch_size=batch_size,
        epochs=epochs,
        steps_per_epoch=steps_per_epoch,
        lr=lr,
        seed=seed,
        device=device,
        name=name,
    )
    pairs = [TrainingPair(i, lab) for i, lab in zip(image, labels, strict=True)]
    t0 = time.perf_counter()

    def report(r: Any) -> None:
        err_console.print(
            f"epoch {r.epoch:3d}/{epochs}  loss {r.train_loss:.4f}  "
            f"val mIoU {r.val_miou:.4f}  {r.seconds:.1f}s"
        )

    path = train_model(pairs, class_list, config, out, on_epoch=report)
    out_console.print(f"wrote {path} in {time.perf_counter() - t0:.0f}s")


def load_classes(path: Path | None, labels: Path) -> list[Any]:
    """Classes from a JSON file, or from the GEOSEG_CLASSES tag of a label raster."""
    from geoseg.classes import ClassInfo
    from geoseg.errors import ConfigError
    from geoseg.io.raster import classes_from_tags

    if path is not None:
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
            return [ClassInfo(int(c["id"]), str(c["name"]), str(c["color"])) for c in raw]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ConfigError(
                f"{path}: cannot read the class list ({exc}); "
                'write a JSON list like [{"id": 0, "name": "water", "color": "#1f78b4"}]'
            ) from None
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
    from geoseg.io.raster import classes_from_tags

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

    def __exit__(self, *exc: object) -> None:
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
