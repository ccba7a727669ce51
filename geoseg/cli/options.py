"""Options shared by several commands, declared once, and how options become settings.

`given_options` hands the options a command was given to a settings loader;
`settings_from_options` builds a pydantic settings object and reports a validation error with
the command-line flag of the field at fault.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Annotated, Any, TypeVar

import typer

S = TypeVar("S")

# Prediction: run, evaluate and demo.
DeviceOption = Annotated[str, typer.Option(help="auto, cpu or cuda.")]
PrecisionOption = Annotated[
    str,
    typer.Option(help="Arithmetic: auto (bf16 on CUDA, fp32 on the CPU), fp32, bf16 or fp16."),
]
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
ThreadsOption = Annotated[int | None, typer.Option(help="CPU threads for torch.")]

# Vectorizing: run and vectorize.
ConnectivityOption = Annotated[
    int, typer.Option(help="Polygon connectivity, 4 or 8 (as gdal_polygonize).")
]
BlockSizeOption = Annotated[
    int | None, typer.Option(help="Vectorize in blocks of this many px (default 2048).")
]
WorkersOption = Annotated[
    int | None,
    typer.Option(
        help="Dask worker processes vectorizing class rasters larger than one block "
        "(default: one per CPU core, only for rasters large enough that a cluster beats "
        "this process; 0: no Dask)."
    ),
]
DaskAddressOption = Annotated[
    str | None,
    typer.Option(
        help="Vectorize on this running Dask scheduler instead of a local cluster "
        "(tcp://host:8786)."
    ),
]
MinAreaOption = Annotated[
    float,
    typer.Option(help="Merge regions smaller than this (m²) into their largest neighbour."),
]
SimplifyOption = Annotated[
    float,
    typer.Option(
        help="Simplify polygon boundaries with this tolerance (m); 0 = none; "
        "shared edges stay shared."
    ),
]


def given_options(ctx: typer.Context, *, exclude: Collection[str] = ()) -> dict[str, Any]:
    """The options the command was given, by parameter name.

    An option not given is ``None`` (a repeatable one: empty), so every option of a command
    using this defaults to ``None``; left out, it leaves a settings file's value in force.
    """
    return {k: v for k, v in ctx.params.items() if k not in exclude and _given(v)}


def _given(value: Any) -> bool:
    return value is not None and not (isinstance(value, list | tuple) and not value)


def settings_from_options(cls: type[S], options: Mapping[str, str], **values: Any) -> S:
    """``cls(**values)``; a validation error becomes a `ConfigError` naming the option.

    ``options`` maps a settings field to its option where the names differ (``models`` is
    given as ``model``); the option is then named by `geoseg.errors.option` (``--model``).
    """
    from pydantic import ValidationError

    from geoseg.errors import ConfigError, option

    try:
        return cls(**values)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = str(first["loc"][0]) if first["loc"] else ""
        raise ConfigError(f"{option(options.get(field, field))}: {first['msg']}") from None
