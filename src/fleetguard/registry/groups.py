"""Device groups: static ones list their members, dynamic ones follow a label query."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from fleetguard.auditlog import append_audit_entry
from fleetguard.core.clock import utcnow
from fleetguard.core.errors import ValidationFailedError
from fleetguard.registry._rows import device_row, text_field
from fleetguard.registry.errors import (
    DeviceExistsError,
    GroupNotFoundError,
    InvalidTransitionError,
)
from fleetguard.registry.models import DeviceGroup, GroupKind, parse_label_query
from fleetguard.store.tables.registry import DeviceGroupMemberRow, DeviceGroupRow


def create_group(
    session: Session, *, name: str, kind: GroupKind, label_query: str | None, actor: str
) -> DeviceGroup:
    clean = text_field(name, "name", 100)
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
    device = device_row(session, device_id)
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
