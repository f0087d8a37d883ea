"""The registry's rows read as devices, and written from checked input: the pieces its
modules (service, listing, groups, CSV exchange) share."""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Iterable

from sqlalchemy import Select, delete, exists, func, or_, select
from sqlalchemy.orm import Session

from fleetguard.core.errors import ValidationFailedError
from fleetguard.registry.errors import (
    DeviceExistsError,
    DeviceNotFoundError,
    GroupNotFoundError,
)
from fleetguard.registry.models import (
    Device,
    DeviceFilter,
    DeviceState,
    GroupKind,
    parse_label_query,
)
from fleetguard.store.paging import canonical_id, row_by_id
from fleetguard.store.tables.registry import (
    DeviceAddressRow,
    DeviceGroupMemberRow,
    DeviceGroupRow,
    DeviceLabelRow,
    DeviceRow,
)


def text_field(value: str | None, field: str, limit: int) -> str | None:
    if value is None:
        return None
    value = value.strip()
    if not value:
        return None
    if len(value) > limit or any(ord(c) < 32 for c in value):
        raise ValidationFailedError(f"{field} must be up to {limit} printable characters",
                                    field=field)
    return value


def device_name(value: str) -> str:
    name = text_field(value, "name", 200)
    if not name:
        raise ValidationFailedError("name is required", field="name")
    return name


def ip_addresses(values: Iterable[str]) -> list[str]:
    out = []
    for v in values:
        try:
            out.append(str(ipaddress.ip_address(v.strip())))
        except ValueError as exc:
            raise ValidationFailedError(f"not an IP address: {v!r}", field="addresses") from exc
    return sorted(set(out))[:32]


def groups_of(session: Session, device_ids: list[str]) -> dict[str, list[str]]:
    if not device_ids:
        return {}
    rows = session.execute(
        select(DeviceGroupMemberRow.device_id, DeviceGroupRow.name)
        .join(DeviceGroupRow, DeviceGroupRow.id == DeviceGroupMemberRow.group_id)
        .where(DeviceGroupMemberRow.device_id.in_(device_ids))
    ).all()
    out: dict[str, list[str]] = {}
    for device_id, name in rows:
        out.setdefault(device_id, []).append(name)
    return out


def to_device(row: DeviceRow, groups: list[str] | None = None) -> Device:
    return Device(
        id=row.id, name=row.name, serial=row.serial, hardware_model=row.hardware_model,
        vendor=row.vendor, labels=json.loads(row.labels), state=DeviceState(row.state),
        firmware_version=row.firmware_version, last_seen_at=row.last_seen_at,
        addresses=json.loads(row.addresses), groups=sorted(groups or []),
        created_at=row.created_at, updated_at=row.updated_at,
    )


def device_row(session: Session, device_id: str, *, lock: bool = False) -> DeviceRow:
    return row_by_id(session, DeviceRow, device_id, DeviceNotFoundError, "device", lock=lock)


def set_labels(session: Session, row: DeviceRow, labels: dict[str, str]) -> None:
    row.labels = json.dumps(labels, sort_keys=True)
    for old in session.execute(
        select(DeviceLabelRow).where(DeviceLabelRow.device_id == row.id)
    ).scalars():
        session.delete(old)
    session.flush()
    for key, value in labels.items():
        session.add(DeviceLabelRow(device_id=row.id, key=key, value=value))


def set_addresses(session: Session, row: DeviceRow, addresses: list[str]) -> None:
    """The device's addresses (canonical IP text, as :func:`ip_addresses` gives): its list,
    and one indexed row each for :mod:`fleetguard.registry.lookup`. The only writer of both."""
    row.addresses = json.dumps(addresses)
    session.execute(delete(DeviceAddressRow).where(DeviceAddressRow.device_id == row.id))
    session.add_all(DeviceAddressRow(device_id=row.id, address=a) for a in addresses)


def ensure_serial_free(session: Session, serial: str) -> None:
    """Serials are unique: a second device with one is a conflict, not a new device."""
    if session.execute(select(DeviceRow.id).where(DeviceRow.serial == serial)).first():
        raise DeviceExistsError(f"a device with serial {serial!r} already exists")


def device_key(device_id: str) -> str:
    return canonical_id(device_id, DeviceNotFoundError, "device")


def _apply_label_query(query: Select[DeviceRow], text: str) -> Select[DeviceRow]:
    for req in parse_label_query(text):
        has = exists().where(
            DeviceLabelRow.device_id == DeviceRow.id, DeviceLabelRow.key == req.key,
            *( [DeviceLabelRow.value == req.value] if req.op == "=" else [] ),
        )
        if req.op == "!=":
            query = query.where(~exists().where(
                DeviceLabelRow.device_id == DeviceRow.id, DeviceLabelRow.key == req.key,
                DeviceLabelRow.value == req.value,
            ))
        else:
            query = query.where(has)
    return query


def filtered_devices(session: Session, flt: DeviceFilter) -> Select[DeviceRow]:
    """The devices ``flt`` selects, unordered and unpaged (the caller adds both)."""
    query = select(DeviceRow)
    if flt.state is not None:
        query = query.where(DeviceRow.state == flt.state.value)
    if flt.vendor:
        query = query.where(DeviceRow.vendor == flt.vendor)
    if flt.search:
        term = flt.search.strip()[:100].lower()
        like = f"%{term.replace('%', '').replace('_', '')}%"
        query = query.where(or_(
            func.lower(DeviceRow.name).like(like), func.lower(DeviceRow.serial).like(like),
            DeviceRow.id == term,
        ))
    if flt.label_query:
        query = _apply_label_query(query, flt.label_query)
    if flt.group:
        group = session.execute(
            select(DeviceGroupRow).where(DeviceGroupRow.name == flt.group)
        ).scalar_one_or_none()
        if group is None:
            raise GroupNotFoundError(f"no group {flt.group!r}")
        if group.kind == GroupKind.DYNAMIC and group.label_query:
            query = _apply_label_query(query, group.label_query)
        else:
            query = query.where(exists().where(
                DeviceGroupMemberRow.device_id == DeviceRow.id,
                DeviceGroupMemberRow.group_id == group.id,
            ))
    return query
