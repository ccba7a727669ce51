"""The `geoseg` command line (typer): `app` holds the commands, `main` is the console script."""

from geoseg.cli.app import app, main

__all__ = ["app", "main"]
