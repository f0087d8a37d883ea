"""Find the devices that a list of serials or addresses names, without reading the whole
registry: what each scan's ingestion asks for the hosts it saw. Both are indexed lookups
(serials are unique; addresses have their own indexed rows, ``device_addresses``).

Decommissioned devices are never found: they have left the fleet, and nothing a scan sees
may be attributed to them again.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session

from fleetguard.registry._rows import groups_of, to_device
from fleetguard.registry.models import Device, DeviceState
from fleetguard.store.tables.registry import DeviceAddressRow, DeviceRow

_IN_CHUNK = 400  # values per IN (...) list: well below every database's parameter limit
_ACTIVE = DeviceRow.state != DeviceState.DECOMMISSIONED.value


def _chunks(values: Iterable[str]) -> Iterator[Sequence[str]]:
    wanted = sorted(set(values))
    for start in range(0, len(wanted), _IN_CHUNK):
        yield wanted[start : start + _IN_CHUNK]


def _devices(session: Session, rows: Sequence[DeviceRow]) -> dict[str, Device]:
    groups = groups_of(session, [r.id for r in rows])
    return {r.id: to_device(r, groups.get(r.id)) for r in rows}


def devices_by_serial(session: Session, serials: Iterable[str]) -> dict[str, Device]:
    """The device of each serial that one has (serials are unique), by serial."""
    rows: list[DeviceRow] = []
    for chunk in _chunks(serials):
        rows.extend(session.execute(
            select(DeviceRow).where(DeviceRow.serial.in_(chunk), _ACTIVE)
        ).scalars())  # fmt: skip
    return {d.serial: d for d in _devices(session, rows).values() if d.serial is not None}


def devices_at_addresses(session: Session, addresses: Iterable[str]) -> dict[str, list[Device]]:
    """For each of ``addresses`` (canonical IP text) that devices list, those devices,
    oldest registration first."""
    pairs: list[tuple[str, DeviceRow]] = []
    for chunk in _chunks(addresses):
        found = session.execute(
            select(DeviceAddressRow.address, DeviceRow)
            .join(DeviceRow, DeviceRow.id == DeviceAddressRow.device_id)
            .where(DeviceAddressRow.address.in_(chunk), _ACTIVE)
            .order_by(DeviceRow.created_at, DeviceRow.id)
        )  # fmt: skip
        pairs.extend((address, row) for address, row in found)
    devices = _devices(session, list({row.id: row for _, row in pairs}.values()))
    by_address: dict[str, list[Device]] = {}
    for address, row in pairs:
        by_address.setdefault(address, []).append(devices[row.id])
    return by_address


__all__ = ["devices_at_addresses", "devices_by_serial"]
