"""Commands that make and score models: `train` and `evaluate`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from geoseg.cli.errors import handles_errors
from geoseg.cli.options import (
    BatchSizeOption,
    DeviceOption,
    OverlapOption,
    PrecisionOption,
    ThreadsOption,
    TileSizeOption,
    TtaOption,
    given_options,
)
from geoseg.cli.rich import err_console, out_console


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
        str | None, typer.Option(help="ce, weighted-ce, focal, dice, lovasz or a sum like ce+dice.")
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
    ema_decay: Annotated[
        float | None,
        typer.Option(
            help="Validate and package a moving average of the weights, this decay per step "
            "(0.99: the last ~100 steps; 0: off)."
        ),
    ] = None,
    lr_schedule: Annotated[
        str | None,
        typer.Option(
            help="plateau (multiply by --lr-factor after --lr-patience stale epochs) or cosine "
            "(half a cosine to 0 over --epochs)."
        ),
    ] = None,
    lr_patience: Annotated[
        int | None, typer.Option(help="Epochs without val-loss gain before halving lr.")
    ] = None,
    lr_factor: Annotated[
        float | None, typer.Option(help="Multiply the learning rate by this on a plateau.")
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
        typer.Option(
            "--augment/--no-augment", help="Flips/rotations, scale, brightness and contrast."
        ),
    ] = None,
    scale_jitter: Annotated[
        float | None, typer.Option(help="Rescale tiles by up to this fraction (0.2: ±20 %).")
    ] = None,
    brightness: Annotated[
        float | None,
        typer.Option(help="Per-band brightness jitter, in band standard deviations."),
    ] = None,
    contrast: Annotated[
        float | None, typer.Option(help="Per-band contrast jitter (0.2: gain 0.8..1.2).")
    ] = None,
    elastic_px: Annotated[
        float | None,
        typer.Option(
            help="Elastic warp: std in px of displacements on a coarse 3x3 grid (0: off)."
        ),
    ] = None,
    blur_px: Annotated[
        float | None,
        typer.Option(help="Blur half the tiles by a Gaussian of std up to this many px (0: off)."),
    ] = None,
    haze: Annotated[
        float | None,
        typer.Option(help="Haze half the tiles: blend with bright grey by up to this (0: off)."),
    ] = None,
    radiometry: Annotated[
        str | None,
        typer.Option(
            help="What the image values mean: auto (declared scale/offset; uint8 without one: "
            "8-bit display values), display, or none."
        ),
    ] = None,
    encoder_weights: Annotated[
        Path | None,
        typer.Option(
            help="Encoder weights to start from: safetensors, a .geoseg package or a "
            "weights-only PyTorch state_dict (never unpickled); nothing is downloaded."
        ),
    ] = None,
    init_weights: Annotated[
        Path | None,
        typer.Option(
            help="A whole model to fine-tune: a .geoseg package, safetensors or state_dict of "
            "the same architecture, bands and classes."
        ),
    ] = None,
    refit: Annotated[
        Path | None,
        typer.Option(
            help="The package of a validated run with these settings: train on every block "
            "(nothing held out) for its best epoch count, at the learning rates it used."
        ),
    ] = None,
    seed: Annotated[int | None, typer.Option(help="Random seed.")] = None,
    device: Annotated[str | None, typer.Option(help="auto, cpu or cuda.")] = None,
    precision: Annotated[
        str | None,
        typer.Option(
            help="auto (bf16 on CUDA and on CPUs with AMX, else fp32), fp32, bf16 or fp16."
        ),
    ] = None,
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


@handles_errors
def evaluate(
    *,
    model: Annotated[
        list[Path],
        typer.Option(help="Model package (.geoseg); repeat to average an ensemble."),
    ],
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
    precision: PrecisionOption = "auto",
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
    object_classes: Annotated[
        str | None,
        typer.Option(
            help="Classes scored as objects (IoU >= 0.5 matches of predicted and reference "
            "objects), names or ids, comma-separated, or none (default: all but the most "
            "frequent class)."
        ),
    ] = None,
    min_area: Annotated[
        float,
        typer.Option(
            help="Merge predicted regions smaller than this (m²) into their largest neighbour "
            "before scoring, as `geoseg run --min-area` does before polygonizing."
        ),
    ] = 0.0,
    threads: ThreadsOption = None,
) -> None:
    """Score a model against reference labels with the same tiled prediction as `run`."""
    from geoseg.cli.rich import evaluation_table, objects_table
    from geoseg.training.evaluate import EvaluateSettings
    from geoseg.training.evaluate import evaluate as evaluate_model

    if threads:
        import torch

        torch.set_num_threads(threads)
    settings = EvaluateSettings(
        model=tuple(model),
        image=image,
        labels=labels,
        window=window,
        out=out,
        device=device,
        precision=precision,
        tile_size=tile_size,
        overlap=overlap,
        batch_size=batch_size,
        tta=tta,
        label_nodata=label_nodata or None,
        class_column=class_column,
        preview_window=preview_window,
        object_classes=object_classes,
        min_area=min_area,
    )
    with err_console.status("predicting and scoring ..."):
        report = evaluate_model(settings)
    where = f" {window}" if window else ""
    names = " + ".join(path.name for path in model)
    out_console.print(evaluation_table(report, f"{names} on {image.name}{where}"))
    if report.objects:
        out_console.print(objects_table(report))
    for kind, path in report.files.items():
        out_console.print(f"{kind:<7} {path}")
