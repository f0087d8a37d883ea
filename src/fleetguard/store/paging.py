"""What every keyset-paginated list and every lookup by id does the same way.

A list orders its query on its key columns plus the id, takes one page with
:func:`page_of`, and gives out the last row's key values as an opaque cursor::

    if cursor:
        rank, ident = decode_cursor(cursor, 2)
        query = query.where(...past (rank, ident)...)
    rows, more = page_of(session, query.order_by(...), limit)
    next_cursor = encode_cursor([rows[-1].rank, rows[-1].id]) if more and rows else None
"""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Sequence
from typing import Any, TypeVar

from sqlalchemy import Select, inspect, select
from sqlalchemy.orm import Session

from fleetguard.core.errors import FleetError, ValidationFailedError
from fleetguard.store.base import Base

MAX_PAGE = 500  # the most rows one page holds, whatever the caller asks

_Row = TypeVar("_Row", bound=Base)


def page_of(session: Session, query: Select[_Row], limit: int) -> tuple[list[_Row], bool]:
    """The first ``limit`` rows (1 to :data:`MAX_PAGE`) of the ordered ``query``, and
    whether more follow (one row more is asked for, to know)."""
    limit = max(1, min(limit, MAX_PAGE))
    rows = list(session.execute(query.limit(limit + 1)).scalars())
    return rows[:limit], len(rows) > limit


def encode_cursor(parts: Sequence[Any]) -> str:
    raw = json.dumps(list(parts), separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def refused_cursor() -> ValidationFailedError:
    """The one answer to a cursor that no list gave out, or another list did."""
    return ValidationFailedError("cursor is not one this list gave out", field="cursor")


def decode_cursor(cursor: str, length: int) -> list[Any]:
    """The ``length`` parts :func:`encode_cursor` put in ``cursor``; what each part is,
    the list checks (raising :func:`refused_cursor` when it is not)."""
    try:
        parts = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (ValueError, TypeError):
        parts = None
    if not isinstance(parts, list) or len(parts) != length:
        raise refused_cursor()
    return parts


def canonical_id(ident: str, missing: type[FleetError], what: str) -> str:
    """``ident`` as stored (a UUID's canonical text); a malformed one names no row."""
    try:
        return str(uuid.UUID(ident))
    except (ValueError, AttributeError, TypeError):
        raise missing(f"no {what} {ident[:60]!r}") from None


def row_by_id(
    session: Session, table: type[_Row], ident: str, missing: type[FleetError], what: str,
    *, lock: bool = False,
) -> _Row:
    """The row of ``table`` whose id is ``ident`` (locked for update if asked), or
    ``missing`` naming ``what``."""
    key = canonical_id(ident, missing, what)
    (id_column,) = inspect(table).primary_key
    query = select(table).where(id_column == key)
    if lock:
        query = query.with_for_update()
    row = session.execute(query).scalar_one_or_none()
    if row is None:
        raise missing(f"no {what} {key}")
    return row
