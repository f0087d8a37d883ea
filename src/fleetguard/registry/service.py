"""The device registry: registering devices, changing them, their lifecycle states and
when they were last seen (groups: ``groups``, browsing: ``listing``, CSV: ``csv_exchange``)."""

from __future__ import annotations

import ipaddress
import json
import uuid
from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta

from sqlalchemy import Table, bindparam, func, or_, select, update
from sqlalchemy.orm import Session

from fleetguard.auditlog import append_audit_entry
from fleetguard.core.clock import utcnow
from fleetguard.registry._rows import (
    device_key,
    device_name,
    device_row,
    ensure_serial_free,
    groups_of,
    ip_addresses,
    set_addresses,
    set_labels,
    text_field,
    to_device,
)
from fleetguard.registry.errors import (
    DeviceExistsError,
    DeviceNotFoundError,
    InvalidTransitionError,
)
from fleetguard.registry.listing import browse_devices
from fleetguard.registry.models import (
    ALLOWED_TRANSITIONS,
    Device,
    DeviceChanges,
    DeviceFilter,
    DevicePage,
    DeviceSort,
    DeviceState,
    validate_labels,
)
from fleetguard.store import expire_loaded, flushed_connection
from fleetguard.store.tables.registry import DeviceRow


def register_device(
    session: Session,
    *,
    name: str,
    actor: str,
    serial: str | None = None,
    hardware_model: str | None = None,
    vendor: str | None = None,
    firmware_version: str | None = None,
    labels: dict[str, str] | None = None,
    device_id: str | None = None,
) -> Device:
    now = utcnow()
    ident = str(uuid.UUID(device_id)) if device_id else str(uuid.uuid4())
    serial = text_field(serial, "serial", 128)
    if session.get(DeviceRow, ident) is not None:
        raise DeviceExistsError(f"device {ident} already exists")
    if serial:
        ensure_serial_free(session, serial)
    row = DeviceRow(
        id=ident, name=device_name(name), serial=serial,
        hardware_model=text_field(hardware_model, "hardware_model", 200),
        vendor=text_field(vendor, "vendor", 200),
        firmware_version=text_field(firmware_version, "firmware_version", 100),
        labels="{}", addresses="[]", state=DeviceState.REGISTERED.value,
        created_at=now, updated_at=now,
    )
    session.add(row)
    session.flush()
    set_labels(session, row, validate_labels(labels or {}))
    session.flush()
    append_audit_entry(
        session, actor=actor, action="device.register", target=f"device:{ident}",
        details={"name": row.name, "serial": serial},
    )
    return to_device(row)


def get_device(session: Session, device_id: str) -> Device:
    row = device_row(session, device_id)
    return to_device(row, groups_of(session, [row.id]).get(row.id))


_DEVICES: Table = DeviceRow.__table__  # type: ignore[assignment]
# Built once: state reads and changes run on every enrollment and device request.
_SELECT_STATE = select(_DEVICES.c.state).where(_DEVICES.c.id == bindparam("key"))
_SELECT_STATE_LOCKED = _SELECT_STATE.with_for_update()
_SET_STATE = (update(_DEVICES).where(_DEVICES.c.id == bindparam("key"))
              .values(state=bindparam("new_state"), updated_at=bindparam("now")))


def device_state(session: Session, device_id: str, *, lock: bool = False) -> DeviceState:
    query = _SELECT_STATE_LOCKED if lock else _SELECT_STATE
    state = flushed_connection(session).execute(query, {"key": device_key(device_id)}).scalar()
    if state is None:
        raise DeviceNotFoundError(f"no device {device_id}")
    return DeviceState(state)


def find_device_by_serial(session: Session, serial: str) -> Device | None:
    row = session.execute(select(DeviceRow).where(DeviceRow.serial == serial)).scalar_one_or_none()
    return to_device(row) if row else None


def update_device(
    session: Session, device_id: str, changes: DeviceChanges, *, actor: str
) -> Device:
    row = device_row(session, device_id, lock=True)
    if row.state == DeviceState.DECOMMISSIONED:
        raise InvalidTransitionError("a decommissioned device cannot be changed")
    changed: dict[str, object] = {}
    if changes.name is not None:
        row.name = changed["name"] = device_name(changes.name)
    if changes.serial is not None:
        serial = text_field(changes.serial, "serial", 128)
        if serial and serial != row.serial:
            ensure_serial_free(session, serial)
        row.serial = serial
        changed["serial"] = serial
    for attr, limit in (("hardware_model", 200), ("vendor", 200), ("firmware_version", 100)):
        value = getattr(changes, attr)
        if value is not None:
            setattr(row, attr, text_field(value, attr, limit))
            changed[attr] = getattr(row, attr)
    if changes.labels is not None:
        set_labels(session, row, validate_labels(changes.labels))
        changed["labels"] = changes.labels
    if changes.addresses is not None:
        set_addresses(session, row, ip_addresses(changes.addresses))
        changed["addresses"] = json.loads(row.addresses)
    if changed:
        row.updated_at = utcnow()
        append_audit_entry(
            session, actor=actor, action="device.update", target=f"device:{row.id}",
            details=changed,
        )
    session.flush()
    return to_device(row, groups_of(session, [row.id]).get(row.id))


def transition_device_state(
    session: Session, device_id: str, state: DeviceState, *, actor: str, reason: str = "",
    locked_state: DeviceState | None = None,
) -> DeviceState:
    """Move a device to ``state`` (audited); returns the state it had. No-op if already there.

    ``locked_state`` is the state the caller already read with ``device_state(...,
    lock=True)`` in this transaction, which spares reading it again. Plain statements
    rather than the unit of work: enrollment runs this on its hot path.
    """
    key = device_key(device_id)
    current = locked_state or device_state(session, key, lock=True)
    if state == current:
        return current
    if state not in ALLOWED_TRANSITIONS[current]:
        raise InvalidTransitionError(f"a {current.value} device cannot become {state.value}")
    session.connection().execute(_SET_STATE, {"key": key, "new_state": state.value,
                                              "now": utcnow()})
    expire_loaded(session, DeviceRow, key, "state", "updated_at")
    append_audit_entry(
        session, actor=actor, action=f"device.state.{state.value}", target=f"device:{key}",
        details={"from": current.value, "to": state.value, "reason": reason[:500]},
    )
    return current


def set_device_state(
    session: Session, device_id: str, state: DeviceState, *, actor: str, reason: str = ""
) -> Device:
    transition_device_state(session, device_id, state, actor=actor, reason=reason)
    return get_device(session, device_id)


def record_devices_seen(
    session: Session,
    device_ids: Iterable[str],
    *,
    addresses: Mapping[str, str] | None = None,
    now: datetime | None = None,
) -> int:
    """Last seen for many devices at once, written at most once a minute per device, and
    each new address in ``addresses`` (device id -> the IP it was heard from) added to its
    device's list. Only the telemetry ingest writer calls this; unknown ids are skipped.
    Returns how many last-seen values were written."""
    now = now or utcnow()
    addresses = addresses or {}
    stale = now - timedelta(seconds=60)
    ids = sorted(set(device_ids) | addresses.keys())
    written = 0
    conn = session.connection()
    for start in range(0, len(ids), 500):
        result = conn.execute(
            update(DeviceRow)
            .where(DeviceRow.id.in_(ids[start : start + 500]),
                   or_(DeviceRow.last_seen_at.is_(None), DeviceRow.last_seen_at < stale))
            .values(last_seen_at=now)
        )
        written += max(result.rowcount, 0)
    _add_addresses(session, addresses)
    return written


def _add_addresses(session: Session, addresses: Mapping[str, str]) -> None:
    heard: dict[str, str] = {}
    for device_id, address in addresses.items():
        try:
            heard[device_id] = str(ipaddress.ip_address(address))
        except ValueError:
            continue  # not an IP (e.g. a test transport): nothing to record
    ids = sorted(heard)
    for start in range(0, len(ids), 500):
        for row in session.execute(
            select(DeviceRow).where(DeviceRow.id.in_(ids[start : start + 500]))
        ).scalars():
            known = json.loads(row.addresses)
            if heard[row.id] not in known:
                set_addresses(session, row, ip_addresses([*known, heard[row.id]]))


def registered_device_ids(session: Session, device_ids: Iterable[str]) -> set[str]:
    """Which of these (canonical) device ids the registry holds: one query per 500."""
    ids = sorted(set(device_ids))
    found: set[str] = set()
    conn = session.connection()
    for start in range(0, len(ids), 500):
        found.update(conn.execute(
            select(DeviceRow.id).where(DeviceRow.id.in_(ids[start : start + 500]))
        ).scalars())
    return found


def list_devices(
    session: Session, flt: DeviceFilter | None = None, *, cursor: str | None = None,
    limit: int = 100,
) -> DevicePage:
    """Oldest first, keyset-paginated on (created_at, id) so pages stay fast at any depth
    (:func:`fleetguard.registry.listing.browse_devices` in registration order)."""
    return browse_devices(session, flt, sort=DeviceSort.REGISTERED, cursor=cursor, limit=limit)


def count_devices_by_state(session: Session) -> dict[DeviceState, int]:
    rows = session.execute(select(DeviceRow.state, func.count()).group_by(DeviceRow.state)).all()
    counts = {state: 0 for state in DeviceState}
    for state, n in rows:
        counts[DeviceState(state)] = n
    return counts
