"""The device registry: inventory, lifecycle, groups, search and CSV exchange."""

from __future__ import annotations

import csv
import io
import ipaddress
import json
import uuid
from collections.abc import Iterable, Iterator
from datetime import datetime, timedelta

from sqlalchemy import Select, Table, bindparam, exists, func, or_, select, update
from sqlalchemy.orm import Session

from fleetguard.auditlog import append_audit_entry
from fleetguard.core.clock import utcnow
from fleetguard.core.errors import ValidationFailedError, excerpt
from fleetguard.core.spreadsheet import csv_cell
from fleetguard.registry.errors import (
    DeviceExistsError,
    DeviceNotFoundError,
    GroupNotFoundError,
    InvalidTransitionError,
)
from fleetguard.registry.models import (
    ALLOWED_TRANSITIONS,
    Device,
    DeviceChanges,
    DeviceFilter,
    DeviceGroup,
    DevicePage,
    DeviceSort,
    DeviceState,
    GroupKind,
    parse_label_query,
    validate_labels,
)
from fleetguard.store import expire_loaded, flushed_connection
from fleetguard.store.tables import (
    DeviceGroupMemberRow,
    DeviceGroupRow,
    DeviceLabelRow,
    DeviceRow,
)

MAX_PAGE = 500
CSV_COLUMNS = [
    "id", "name", "serial", "hardware_model", "vendor", "firmware_version", "labels", "state",
]
MAX_CSV_ROWS = 100_000


def _text(value: str | None, field: str, limit: int) -> str | None:
    if value is None:
        return None
    value = value.strip()
    if not value:
        return None
    if len(value) > limit or any(ord(c) < 32 for c in value):
        raise ValidationFailedError(f"{field} must be up to {limit} printable characters",
                                    field=field)
    return value


def _name(value: str) -> str:
    name = _text(value, "name", 200)
    if not name:
        raise ValidationFailedError("name is required", field="name")
    return name


def _addresses(values: Iterable[str]) -> list[str]:
    out = []
    for v in values:
        try:
            out.append(str(ipaddress.ip_address(v.strip())))
        except ValueError as exc:
            raise ValidationFailedError(f"not an IP address: {v!r}", field="addresses") from exc
    return sorted(set(out))[:32]


def _groups_of(session: Session, device_ids: list[str]) -> dict[str, list[str]]:
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


def _to_device(row: DeviceRow, groups: list[str] | None = None) -> Device:
    return Device(
        id=row.id, name=row.name, serial=row.serial, hardware_model=row.hardware_model,
        vendor=row.vendor, labels=json.loads(row.labels), state=DeviceState(row.state),
        firmware_version=row.firmware_version, last_seen_at=row.last_seen_at,
        addresses=json.loads(row.addresses), groups=sorted(groups or []),
        created_at=row.created_at, updated_at=row.updated_at,
    )


def _row(session: Session, device_id: str, *, lock: bool = False) -> DeviceRow:
    query = select(DeviceRow).where(DeviceRow.id == _device_key(device_id))
    if lock:
        query = query.with_for_update()
    row = session.execute(query).scalar_one_or_none()
    if row is None:
        raise DeviceNotFoundError(f"no device {device_id}")
    return row


def _set_labels(session: Session, row: DeviceRow, labels: dict[str, str]) -> None:
    row.labels = json.dumps(labels, sort_keys=True)
    for old in session.execute(
        select(DeviceLabelRow).where(DeviceLabelRow.device_id == row.id)
    ).scalars():
        session.delete(old)
    session.flush()
    for key, value in labels.items():
        session.add(DeviceLabelRow(device_id=row.id, key=key, value=value))


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
    serial = _text(serial, "serial", 128)
    if session.get(DeviceRow, ident) is not None:
        raise DeviceExistsError(f"device {ident} already exists")
    if serial and session.execute(
        select(DeviceRow.id).where(DeviceRow.serial == serial)
    ).first():
        raise DeviceExistsError(f"a device with serial {serial!r} already exists")
    row = DeviceRow(
        id=ident, name=_name(name), serial=serial,
        hardware_model=_text(hardware_model, "hardware_model", 200),
        vendor=_text(vendor, "vendor", 200),
        firmware_version=_text(firmware_version, "firmware_version", 100),
        labels="{}", addresses="[]", state=DeviceState.REGISTERED.value,
        created_at=now, updated_at=now,
    )
    session.add(row)
    session.flush()
    _set_labels(session, row, validate_labels(labels or {}))
    session.flush()
    append_audit_entry(
        session, actor=actor, action="device.register", target=f"device:{ident}",
        details={"name": row.name, "serial": serial},
    )
    return _to_device(row)


def get_device(session: Session, device_id: str) -> Device:
    row = _row(session, device_id)
    return _to_device(row, _groups_of(session, [row.id]).get(row.id))


def _device_key(device_id: str) -> str:
    try:
        return str(uuid.UUID(device_id))
    except (ValueError, AttributeError, TypeError) as exc:
        raise DeviceNotFoundError(f"no device {device_id!r}") from exc


_DEVICES: Table = DeviceRow.__table__  # type: ignore[assignment]
# Built once: state reads and changes run on every enrollment and device request.
_SELECT_STATE = select(_DEVICES.c.state).where(_DEVICES.c.id == bindparam("key"))
_SELECT_STATE_LOCKED = _SELECT_STATE.with_for_update()
_SET_STATE = (update(_DEVICES).where(_DEVICES.c.id == bindparam("key"))
              .values(state=bindparam("new_state"), updated_at=bindparam("now")))


def device_state(session: Session, device_id: str, *, lock: bool = False) -> DeviceState:
    query = _SELECT_STATE_LOCKED if lock else _SELECT_STATE
    state = flushed_connection(session).execute(query, {"key": _device_key(device_id)}).scalar()
    if state is None:
        raise DeviceNotFoundError(f"no device {device_id}")
    return DeviceState(state)


def find_device_by_serial(session: Session, serial: str) -> Device | None:
    row = session.execute(select(DeviceRow).where(DeviceRow.serial == serial)).scalar_one_or_none()
    return _to_device(row) if row else None


def update_device(
    session: Session, device_id: str, changes: DeviceChanges, *, actor: str
) -> Device:
    row = _row(session, device_id, lock=True)
    if row.state == DeviceState.DECOMMISSIONED:
        raise InvalidTransitionError("a decommissioned device cannot be changed")
    changed: dict[str, object] = {}
    if changes.name is not None:
        row.name = changed["name"] = _name(changes.name)
    if changes.serial is not None:
        serial = _text(changes.serial, "serial", 128)
        if serial and serial != row.serial and session.execute(
            select(DeviceRow.id).where(DeviceRow.serial == serial)
        ).first():
            raise DeviceExistsError(f"a device with serial {serial!r} already exists")
        row.serial = serial
        changed["serial"] = serial
    for attr, limit in (("hardware_model", 200), ("vendor", 200), ("firmware_version", 100)):
        value = getattr(changes, attr)
        if value is not None:
            setattr(row, attr, _text(value, attr, limit))
            changed[attr] = getattr(row, attr)
    if changes.labels is not None:
        _set_labels(session, row, validate_labels(changes.labels))
        changed["labels"] = changes.labels
    if changes.addresses is not None:
        row.addresses = json.dumps(_addresses(changes.addresses))
        changed["addresses"] = json.loads(row.addresses)
    if changed:
        row.updated_at = utcnow()
        append_audit_entry(
            session, actor=actor, action="device.update", target=f"device:{row.id}",
            details=changed,
        )
    session.flush()
    return _to_device(row, _groups_of(session, [row.id]).get(row.id))


def transition_device_state(
    session: Session, device_id: str, state: DeviceState, *, actor: str, reason: str = "",
    locked_state: DeviceState | None = None,
) -> DeviceState:
    """Move a device to ``state`` (audited); returns the state it had. No-op if already there.

    ``locked_state`` is the state the caller already read with ``device_state(...,
    lock=True)`` in this transaction, which spares reading it again. Plain statements
    rather than the unit of work: enrollment runs this on its hot path.
    """
    key = _device_key(device_id)
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


def record_device_seen(session: Session, device_id: str, address: str | None) -> None:
    """Last seen and addresses, written at most once a minute per device."""
    row = _row(session, device_id)
    now = utcnow()
    if row.last_seen_at is None or (now - row.last_seen_at).total_seconds() > 60:
        row.last_seen_at = now
    if address:
        try:
            ip = str(ipaddress.ip_address(address))
        except ValueError:
            return  # not an IP (e.g. a test transport): nothing to record
        known = json.loads(row.addresses)
        if ip not in known:
            row.addresses = json.dumps(_addresses([*known, ip]))


def record_devices_seen(
    session: Session, device_ids: Iterable[str], *, now: datetime | None = None
) -> int:
    """Last seen for many devices at once (telemetry, whatever its transport); as with
    :func:`record_device_seen`, a device's row is written at most once a minute.
    Returns how many rows were written."""
    now = now or utcnow()
    stale = now - timedelta(seconds=60)
    ids = sorted(set(device_ids))
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
    return written


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


def _filtered(session: Session, flt: DeviceFilter) -> Select[DeviceRow]:
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


def list_devices(
    session: Session, flt: DeviceFilter | None = None, *, cursor: str | None = None,
    limit: int = 100,
) -> DevicePage:
    """Oldest first, keyset-paginated on (created_at, id) so pages stay fast at any depth
    (:func:`fleetguard.registry.listing.browse_devices` in registration order)."""
    from fleetguard.registry.listing import browse_devices  # (it builds on this module)

    return browse_devices(session, flt, sort=DeviceSort.REGISTERED, cursor=cursor, limit=limit)


def count_devices_by_state(session: Session) -> dict[DeviceState, int]:
    rows = session.execute(select(DeviceRow.state, func.count()).group_by(DeviceRow.state)).all()
    counts = {state: 0 for state in DeviceState}
    for state, n in rows:
        counts[DeviceState(state)] = n
    return counts


# --- groups ----------------------------------------------------------------------------


def create_group(
    session: Session, *, name: str, kind: GroupKind, label_query: str | None, actor: str
) -> DeviceGroup:
    clean = _text(name, "name", 100)
    if not clean:
        raise ValidationFailedError("group name is required", field="name")
    if kind is GroupKind.DYNAMIC:
        if not label_query:
            raise ValidationFailedError("a dynamic group needs a label query",
                                        field="label_query")
        parse_label_query(label_query)
    elif label_query:
        raise ValidationFailedError("a static group has members, not a label query",
                                    field="label_query")
    if session.execute(select(DeviceGroupRow.id).where(DeviceGroupRow.name == clean)).first():
        raise DeviceExistsError(f"a group named {clean!r} already exists", code="group_exists")
    row = DeviceGroupRow(name=clean, kind=kind.value, label_query=label_query,
                         created_at=utcnow())
    session.add(row)
    session.flush()
    append_audit_entry(session, actor=actor, action="group.create", target=f"group:{clean}",
                       details={"kind": kind.value, "label_query": label_query})
    return DeviceGroup(row.name, GroupKind(row.kind), row.label_query, row.created_at)


def list_groups(session: Session) -> list[DeviceGroup]:
    rows = session.execute(select(DeviceGroupRow).order_by(DeviceGroupRow.name)).scalars()
    return [DeviceGroup(r.name, GroupKind(r.kind), r.label_query, r.created_at) for r in rows]


def set_group_membership(
    session: Session, *, group: str, device_id: str, member: bool, actor: str
) -> None:
    row = session.execute(
        select(DeviceGroupRow).where(DeviceGroupRow.name == group)
    ).scalar_one_or_none()
    if row is None:
        raise GroupNotFoundError(f"no group {group!r}")
    if row.kind != GroupKind.STATIC:
        raise InvalidTransitionError("members of a dynamic group follow its label query",
                                     code="group_is_dynamic")
    device = _row(session, device_id)
    existing = session.get(DeviceGroupMemberRow, (row.id, device.id))
    if member and existing is None:
        session.add(DeviceGroupMemberRow(group_id=row.id, device_id=device.id))
    elif not member and existing is not None:
        session.delete(existing)
    else:
        return
    append_audit_entry(
        session, actor=actor, action="group.add" if member else "group.remove",
        target=f"group:{group}", details={"device": device.id},
    )


# --- CSV -------------------------------------------------------------------------------


def _labels_to_text(labels: dict[str, str]) -> str:
    return ";".join(f"{k}={v}" for k, v in sorted(labels.items()))


def _labels_from_text(text: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for part in filter(None, (p.strip() for p in text.split(";"))):
        key, sep, value = part.partition("=")
        if not sep:
            raise ValidationFailedError(f"label {part!r} is not key=value", field="labels")
        out[key.strip()] = value.strip()
    return out


def export_devices_csv(session: Session, flt: DeviceFilter | None = None) -> Iterator[str]:
    """CSV lines, page by page, every cell safe to open in a spreadsheet.

    The filter is checked and the first page read before this returns: a bad filter is an
    error for the caller, not a download cut off after its header line.
    """
    return _device_csv_pages(session, flt, list_devices(session, flt, limit=MAX_PAGE))


def _device_csv_pages(
    session: Session, flt: DeviceFilter | None, page: DevicePage
) -> Iterator[str]:
    buf = io.StringIO()
    csv.writer(buf).writerow(CSV_COLUMNS)
    yield buf.getvalue()
    while True:
        buf = io.StringIO()
        writer = csv.writer(buf)
        for d in page.devices:
            writer.writerow([csv_cell(v) for v in (
                d.id, d.name, d.serial, d.hardware_model, d.vendor, d.firmware_version,
                _labels_to_text(d.labels), d.state.value,
            )])
        yield buf.getvalue()
        if page.next_cursor is None:
            return
        page = list_devices(session, flt, cursor=page.next_cursor, limit=MAX_PAGE)


def import_devices_csv(session: Session, text: str, *, actor: str) -> int:
    """Register every row or none: the first bad row is named by its line number."""
    # newline="": the csv module reads line ends itself, so a quoted value may hold one.
    reader = csv.DictReader(io.StringIO(text, newline=""))
    try:
        return _import_rows(session, reader, actor)
    except csv.Error as exc:  # a stray quote or line end: bad input, not a server error
        raise ValidationFailedError(
            f"line {reader.line_num}: not valid CSV ({exc})", field="csv"
        ) from None


def _import_rows(session: Session, reader: csv.DictReader[str], actor: str) -> int:
    if reader.fieldnames is None or "name" not in reader.fieldnames:
        raise ValidationFailedError("CSV needs a header row with at least a 'name' column",
                                    field="csv")
    unknown = set(reader.fieldnames) - set(CSV_COLUMNS)
    if unknown:
        raise ValidationFailedError(
            f"unknown CSV columns: {excerpt(', '.join(sorted(unknown)))}", field="csv")
    count = 0
    for record in reader:
        line = reader.line_num  # the record's last line: a quoted value may span several
        if count >= MAX_CSV_ROWS:
            raise ValidationFailedError(f"at most {MAX_CSV_ROWS} rows per import", field="csv")
        if None in record:  # csv.DictReader files a row's extra fields under None
            raise ValidationFailedError(
                f"line {line}: more fields than the header's {len(reader.fieldnames)}"
                " (a value with a comma must be quoted)", field="csv")
        try:
            register_device(
                session, name=record.get("name") or "", actor=actor,
                serial=record.get("serial"), hardware_model=record.get("hardware_model"),
                vendor=record.get("vendor"), firmware_version=record.get("firmware_version"),
                labels=_labels_from_text(record.get("labels") or ""),
                device_id=record.get("id") or None,
            )
        except (ValidationFailedError, DeviceExistsError) as exc:
            exc.message = f"line {line}: {exc.message}"
            exc.args = (exc.message,)
            raise
        except ValueError as exc:
            raise ValidationFailedError(f"line {line}: {exc}", field="csv") from exc
        count += 1
    return count
