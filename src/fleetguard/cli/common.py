"""What every command shares: resolving settings, printing errors, exit codes."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, ParamSpec, TypeVar

import typer
from rich.console import Console

from fleetguard.core.config import Settings, load_settings
from fleetguard.core.errors import FleetError

console = Console(soft_wrap=True)
err_console = Console(stderr=True, soft_wrap=True)

P = ParamSpec("P")
R = TypeVar("R")

DataDirOption = Annotated[
    Path | None,
    typer.Option(
        "--data-dir", envvar="FLEETGUARD_DATA_DIR",
        help="Data directory (default: the user's data home /fleetguard).",
    ),
]


def settings_from(data_dir: Path | None) -> Settings:
    return load_settings(data_dir=data_dir)


@contextmanager
def fleet_errors() -> Iterator[None]:
    """Turn our errors into one red line and exit code 1 (2 for bad input)."""
    try:
        yield
    except FleetError as exc:
        err_console.print(f"[red]error[/red] ({exc.code}): {exc.message}")
        bad_input = 400 <= exc.http_status < 500 and exc.http_status != 409
        raise typer.Exit(2 if bad_input else 1) from exc


def handles_errors(func: Callable[P, R]) -> Callable[P, R]:
    import functools

    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        with fleet_errors():
            return func(*args, **kwargs)

    return wrapper
