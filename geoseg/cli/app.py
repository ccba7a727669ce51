"""The `geoseg` command line: the typer app, its root options and its commands' registration.

The commands live by theme in `mapping` (run, vectorize, demo, synth), `training` (train,
evaluate) and `manage` (model info, deploy); they only declare options and call library
functions.

A `GeosegError` becomes one red line on stderr and a non-zero exit code (a traceback only with
``--debug``); Ctrl-C cancels cleanly with exit code 130 and leaves no partial outputs.
"""

from __future__ import annotations

import os
from typing import Annotated

import typer

from geoseg.cli import manage, mapping, training
from geoseg.cli.errors import show_library_warnings
from geoseg.cli.exit import leave
from geoseg.cli.rich import err_console

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


for command in (mapping.run, mapping.vectorize, mapping.demo, mapping.synth):
    app.command()(command)
for command in (training.train, training.evaluate, manage.deploy):
    app.command()(command)
model_app.command("info")(manage.model_info)


def main() -> None:
    """Console-script entry point; ends without the interpreter's teardown (`exit.leave`)."""
    try:
        app()
    except SystemExit as exc:
        if exc.code is None or isinstance(exc.code, int):
            leave(exc.code or 0)
        raise
    leave(0)
