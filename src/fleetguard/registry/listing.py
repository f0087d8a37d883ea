"""Browsing the fleet: the device list in any of its orders, and fleet-wide figures.

Every order is keyset-paginated on its own columns plus the id, each with its index
(migration 0005), so the thousandth page costs what the first does::

    page = browse_devices(session, DeviceFilter(state=DeviceState.ACTIVE),
                          sort=DeviceSort.NAME, limit=50)
    more = browse_devices(session, ..., sort=DeviceSort.NAME, cursor=page.next_cursor)
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, and_, or_, select
from sqlalchemy.orm import InstrumentedAttribute, Session

from fleetguard.core.clock import as_utc
from fleetguard.registry._rows import filtered_devices, groups_of, to_device
from fleetguard.registry.models import (
    DeviceFilter,
    DevicePage,
    DeviceSort,
    DeviceState,
)
from fleetguard.store.idset import in_id_set
from fleetguard.store.paging import decode_cursor, encode_cursor, page_of, refused_cursor
from fleetguard.store.tables.registry import DeviceRow

# Each order's key columns (the id breaks ties) and whether it ascends.
_SORT_KEYS: dict[DeviceSort, tuple[tuple[InstrumentedAttribute[Any], ...], bool]] = {
    DeviceSort.REGISTERED: ((DeviceRow.created_at,), True),
    DeviceSort.REGISTERED_DESC: ((DeviceRow.created_at,), False),
    DeviceSort.NAME: ((DeviceRow.name,), True),
    DeviceSort.NAME_DESC: ((DeviceRow.name,), False),
    DeviceSort.STATE: ((DeviceRow.state, DeviceRow.name), True),
    DeviceSort.STATE_DESC: ((DeviceRow.state, DeviceRow.name), False),
}


def _encode_cursor(row: DeviceRow, sort: DeviceSort) -> str:
    columns, _ = _SORT_KEYS[sort]
    values = [getattr(row, c.key) for c in columns]
    return encode_cursor([
        sort.value, *(v.isoformat() if isinstance(v, datetime) else v for v in values), row.id,
    ])


def _decode_cursor(cursor: str, sort: DeviceSort) -> list[Any]:
    """The key values of the previous page's last row; refuses a cursor of another order."""
    columns, _ = _SORT_KEYS[sort]
    parts = decode_cursor(cursor, len(columns) + 2)
    if parts[0] != sort.value or not all(isinstance(p, str) for p in parts):
        raise refused_cursor()
    try:
        values: list[Any] = [
            as_utc(datetime.fromisoformat(p)) if c.key == "created_at" else p
            for c, p in zip(columns, parts[1:-1], strict=True)
        ]
        return [*values, str(uuid.UUID(parts[-1]))]
    except ValueError:
        raise refused_cursor() from None


def _after(sort: DeviceSort, values: list[Any]) -> ColumnElement[bool]:
    """Rows past the cursor: (a, b, id) > (x, y, z) spelled out as OR of ANDs, which
    SQLite and PostgreSQL both answer from the (a, b, id) index."""
    columns, ascending = _SORT_KEYS[sort]
    keys: list[Any] = [*columns, DeviceRow.id]
    clauses = []
    for i, key in enumerate(keys):
        beyond = key > values[i] if ascending else key < values[i]
        clauses.append(and_(*(keys[j] == values[j] for j in range(i)), beyond))
    return or_(*clauses)


def browse_devices(
    session: Session, flt: DeviceFilter | None = None, *, sort: DeviceSort = DeviceSort.NAME,
    cursor: str | None = None, limit: int = 50,
) -> DevicePage:
    """One page of devices matching ``flt`` in ``sort`` order.

    Raises:
        ValidationFailedError: a cursor of another order or not given out by this list,
            or a malformed label query.
    """
    flt = flt or DeviceFilter()
    query = filtered_devices(session, flt)
    if flt.device_ids is not None:
        query = query.where(in_id_set(DeviceRow.id, flt.device_ids))
    if cursor:
        query = query.where(_after(sort, _decode_cursor(cursor, sort)))
    columns, ascending = _SORT_KEYS[sort]
    order = [c if ascending else c.desc() for c in (*columns, DeviceRow.id)]
    rows, more = page_of(session, query.order_by(*order), limit)
    groups = groups_of(session, [r.id for r in rows])
    return DevicePage(
        devices=[to_device(r, groups.get(r.id)) for r in rows],
        next_cursor=_encode_cursor(rows[-1], sort) if more and rows else None,
    )


def device_ids_in_state(session: Session, state: DeviceState) -> frozenset[str]:
    return frozenset(session.execute(
        select(DeviceRow.id).where(DeviceRow.state == state.value)
    ).scalars())  # fmt: skip


__all__ = ["browse_devices", "device_ids_in_state"]
