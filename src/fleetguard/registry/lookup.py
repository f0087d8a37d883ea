"""Find the devices that a list of serials or addresses names, without reading the whole
registry: what a scan's ingestion asks for each report.

Decommissioned devices are never found: they have left the fleet, and nothing a scan sees
may be attributed to them again.
"""

from __future__ import annotations

import json
from collections.abc import Iterable

from sqlalchemy import SQLColumnExpression, String, cast, func, literal, select
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Session
from sqlalchemy.sql.selectable import TableValuedAlias

from fleetguard.registry._rows import groups_of, to_device
from fleetguard.registry.models import Device, DeviceState
from fleetguard.store.tables import DeviceRow

_IN_CHUNK = 400  # values per IN (...) list: well below every database's parameter limit


def _devices(session: Session, rows: Iterable[DeviceRow]) -> list[Device]:
    found = list(rows)
    groups = groups_of(session, [r.id for r in found])
    return [to_device(r, groups.get(r.id)) for r in found]


def devices_by_serial(session: Session, serials: Iterable[str]) -> dict[str, Device]:
    """The device of each serial that one has (serials are unique), by serial."""
    wanted = sorted(set(serials))
    rows: list[DeviceRow] = []
    for start in range(0, len(wanted), _IN_CHUNK):
        rows.extend(session.execute(
            select(DeviceRow).where(
                DeviceRow.serial.in_(wanted[start : start + _IN_CHUNK]),
                DeviceRow.state != DeviceState.DECOMMISSIONED.value,
            )
        ).scalars())  # fmt: skip
    return {d.serial: d for d in _devices(session, rows) if d.serial is not None}


def _json_array_elements(session: Session, json_text: SQLColumnExpression[str]) -> TableValuedAlias:
    if session.get_bind().dialect.name == "postgresql":
        return func.jsonb_array_elements_text(cast(json_text, JSONB)).table_valued("value")
    return func.json_each(json_text).table_valued("value")


def _listing_any_of(session: Session, addresses: list[str]) -> list[DeviceRow]:
    """Devices whose address list holds one of ``addresses``: one statement whatever the
    count (the wanted list travels as one JSON parameter), the lists read by the database."""
    listed = _json_array_elements(session, DeviceRow.addresses)
    asked = _json_array_elements(session, literal(json.dumps(addresses), String))
    holds_one = select(listed.c.value).where(listed.c.value.in_(select(asked.c.value)))
    query = select(DeviceRow).where(
        DeviceRow.state != DeviceState.DECOMMISSIONED.value, holds_one.exists()
    )
    return list(session.execute(query.order_by(DeviceRow.created_at, DeviceRow.id)).scalars())


def devices_at_addresses(session: Session, addresses: Iterable[str]) -> dict[str, list[Device]]:
    """For each of ``addresses`` (canonical IP text) that devices list, those devices."""
    wanted = sorted(set(addresses))
    if not wanted:
        return {}
    by_address: dict[str, list[Device]] = {}
    for device in _devices(session, _listing_any_of(session, wanted)):
        for address in set(device.addresses).intersection(wanted):
            by_address.setdefault(address, []).append(device)
    return by_address


__all__ = ["devices_at_addresses", "devices_by_serial"]
