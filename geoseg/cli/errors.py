"""How the CLI reports trouble: a `GeosegError` or Ctrl-C as one line and an exit code.

A traceback only appears with ``--debug``; library warnings (``geoseg.*`` loggers) are printed
as one yellow line each on stderr.
"""

from __future__ import annotations

import functools
import logging
import os
import traceback
from collections.abc import Callable
from typing import ParamSpec, TypeVar

import typer
from rich.console import Console
from rich.markup import escape

from geoseg.cli.rich import err_console
from geoseg.errors import GeosegError

P = ParamSpec("P")
R = TypeVar("R")


class ConsoleWarnings(logging.Handler):
    """Library warnings (``geoseg.*`` loggers) as one yellow line each on the error console."""

    def __init__(self, console: Console):
        super().__init__(logging.INFO)
        self._console = console

    def emit(self, record: logging.LogRecord) -> None:
        prefix = "[yellow]warning:[/] " if record.levelno >= logging.WARNING else ""
        self._console.print(
            f"{prefix}{escape(record.getMessage())}", highlight=False, soft_wrap=True
        )


def show_library_warnings(console: Console) -> None:
    """Print geoseg's logged warnings (e.g. a repaired AOI) once each, on stderr."""
    logger = logging.getLogger("geoseg")  # with a handler here, logging's last resort is quiet
    if not any(isinstance(h, ConsoleWarnings) for h in logger.handlers):
        logger.addHandler(ConsoleWarnings(console))
    # what a STAC search found and used is news, not a warning: shown as a plain line
    search = logging.getLogger("geoseg.sources.search")
    search.setLevel(logging.INFO)


def debug_requested() -> bool:
    """Whether ``--debug`` (or ``GEOSEG_DEBUG``) asks for tracebacks."""
    return os.environ.get("GEOSEG_DEBUG", "") not in ("", "0")


def handles_errors(func: Callable[P, R]) -> Callable[P, R]:
    """Turn library errors and Ctrl-C into one line and an exit code."""

    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return func(*args, **kwargs)
        except GeosegError as exc:
            if debug_requested():
                traceback.print_exc()
            err_console.print(
                f"[bold red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True
            )
            raise typer.Exit(exc.exit_code) from None
        except KeyboardInterrupt:
            err_console.print("[yellow]cancelled:[/] no partial outputs were kept")
            raise typer.Exit(130) from None

    return wrapper
