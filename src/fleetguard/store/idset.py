"""A set of ids as one bound parameter, so an ``IN`` filter works at any size.

SQLite refuses statements with more than 32,766 parameters, and one parameter per id is
slow long before that; a JSON array in a single parameter, expanded by the database
(``json_each`` on SQLite, ``json_array_elements_text`` on PostgreSQL), has neither
problem::

    query.where(in_id_set(DeviceRow.id, offline_ids))
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from sqlalchemy import ColumnElement, select
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import InstrumentedAttribute
from sqlalchemy.sql.functions import FunctionElement


class _json_ids(FunctionElement[Any]):
    inherit_cache = True
    name = "json_ids"


@compiles(_json_ids, "sqlite")
def _sqlite(element: _json_ids, compiler: Any, **kw: Any) -> str:
    return f"json_each({compiler.process(element.clauses, **kw)})"


@compiles(_json_ids, "postgresql")
def _postgresql(element: _json_ids, compiler: Any, **kw: Any) -> str:
    return f"json_array_elements_text(CAST({compiler.process(element.clauses, **kw)} AS JSON))"


def in_id_set(
    column: ColumnElement[Any] | InstrumentedAttribute[Any], ids: Iterable[str]
) -> ColumnElement[bool]:
    """``column IN (the ids)``, with the ids sent as one JSON parameter."""
    values = _json_ids(json.dumps(sorted(set(ids)))).table_valued("value")
    return column.in_(select(values.c.value))


__all__ = ["in_id_set"]
