"""How commands print what they list: a table that fits the terminal, or JSON for machines.

A table keeps its identifying columns whole (ids, states, times: what one copies into
the next command) and lets its free-text columns give way, rightmost first, each cut to
one line with an ellipsis; every row stays one line. ``--json`` prints one JSON document
with the records' own field names, times in ISO 8601 and enums as their values.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import Enum
from typing import TYPE_CHECKING, Annotated, TypeVar

import typer

if TYPE_CHECKING:
    from rich.text import Text

JsonOption = Annotated[
    bool, typer.Option("--json", help="Print one JSON document instead of a table.")
]

_Record = TypeVar("_Record")

_GAP = 3  # between two columns: padding, the (blank) rule, padding
_NARROWEST_FREE = 8  # a free-text column never shrinks below this (or its header)


@dataclass(frozen=True, slots=True)
class Column:
    header: str
    #: Free text (a name, an address, evidence): may be cut when the table is too wide.
    free: bool = False


def table_time(moment: datetime | None, missing: str = "never") -> str:
    """A time in a table: UTC to the minute (``--json`` gives it whole)."""
    return f"{moment:%Y-%m-%d %H:%M}" if moment is not None else missing


def _fitted_widths(columns: Sequence[Column], natural: list[int], room: int) -> list[int]:
    widths = list(natural)
    excess = sum(widths) + _GAP * (len(widths) - 1) - room
    for index in reversed(range(len(columns))):
        if excess <= 0:
            break
        if columns[index].free:
            floor = max(len(columns[index].header), _NARROWEST_FREE)
            cut = min(excess, widths[index] - floor)
            if cut > 0:
                widths[index] -= cut
                excess -= cut
    return widths


def print_table(
    columns: Sequence[Column], rows: Iterable[Sequence[str | Text]], *, title: str | None = None
) -> None:
    """Print ``rows`` under ``columns``, fitted to the terminal's width."""
    from rich import box
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    # Sized now, from the terminal or COLUMNS as they are (a console made earlier keeps
    # the COLUMNS it saw then).
    console = Console(soft_wrap=True)
    cells = [[c if isinstance(c, Text) else Text(c) for c in row] for row in rows]
    natural = [
        max([len(column.header), *(row[i].cell_len for row in cells)])
        for i, column in enumerate(columns)
    ]
    widths = _fitted_widths(columns, natural, console.width)
    table = Table(title=title, box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False,
                  header_style="bold", title_justify="left")
    for column, width in zip(columns, widths, strict=True):
        table.add_column(column.header, width=width, no_wrap=True, overflow="ellipsis")
    for row in cells:
        table.add_row(*row)
    console.print(table)


def _jsonable(value: object) -> object:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {field.name: getattr(value, field.name) for field in dataclasses.fields(value)}
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, set | frozenset):
        return sorted(value)
    raise TypeError(f"{type(value).__name__} is not JSON")


def print_records(
    records: Sequence[_Record], columns: Sequence[Column],
    cells: Callable[[_Record], Sequence[str | Text]], *, as_json: bool,
) -> None:
    """What a list command prints: with ``--json`` the records whole, else a table of
    ``columns`` with each record's ``cells``."""
    if as_json:
        print_json(records)
    else:
        print_table(columns, [cells(r) for r in records])


def print_json(document: object) -> None:
    """Print ``document`` (records, lists of them, plain values) as one JSON document."""
    sys.stdout.write(json.dumps(document, default=_jsonable, indent=2, ensure_ascii=False))
    sys.stdout.write("\n")
    sys.stdout.flush()
