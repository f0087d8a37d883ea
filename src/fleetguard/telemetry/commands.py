"""Commands for devices: queued by operators (or automation), fetched by the device, answered.

    pending --fetch--> delivered --result--> ok | failed | rejected
        \\__________________ past expires_at __________________/--> expired

A device may fetch a delivered command again (delivery is at least once; the agent
refuses duplicates by id and says so in its result). A result is accepted only from the
device the command was queued for.
"""

from __future__ import annotations

import json
import secrets
from datetime import datetime, timedelta

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from fleetguard.auditlog import append_audit_entry
from fleetguard.core.clock import utcnow
from fleetguard.core.errors import ValidationFailedError
from fleetguard.protocol import Command, CommandName, CommandResult, to_millis
from fleetguard.registry import service as registry
from fleetguard.store.tables.telemetry import DeviceCommandRow
from fleetguard.telemetry.errors import CommandFinishedError, CommandNotFoundError
from fleetguard.telemetry.models import (
    FINISHED_COMMAND_STATES,
    CommandState,
    QueuedCommand,
)

DEFAULT_TTL = timedelta(hours=24)
MAX_PENDING_PER_FETCH = 32


def _to_model(row: DeviceCommandRow) -> QueuedCommand:
    return QueuedCommand(
        id=row.id, device_id=row.device_id, name=row.name,
        checks=json.loads(row.checks) if row.checks is not None else None,
        state=CommandState(row.status), issued_by=row.issued_by, issued_at=row.issued_at,
        expires_at=row.expires_at, delivered_at=row.delivered_at, finished_at=row.finished_at,
        detail=row.result_detail,
        check_results=json.loads(row.result_checks) if row.result_checks is not None else None,
    )


def queue_command(
    session: Session,
    device_id: str,
    name: CommandName | str,
    *,
    actor: str,
    checks: list[str] | None = None,
    ttl: timedelta = DEFAULT_TTL,
) -> QueuedCommand:
    """Queue a command for one device; it is validated as the wire message it will become."""
    device = registry.get_device(session, device_id)
    now = utcnow()
    command_id = secrets.token_urlsafe(12)
    try:
        wire = Command(id=command_id, name=CommandName(name), issued_at_ms=to_millis(now),
                       expires_at_ms=to_millis(now + ttl), checks=checks)
    except ValueError as exc:
        raise ValidationFailedError(f"not a valid command: {exc}", field="command") from None
    row = DeviceCommandRow(
        id=command_id, device_id=device.id, name=wire.name.value,
        checks=json.dumps(checks) if checks is not None else None,
        status=CommandState.PENDING.value, issued_by=actor, issued_at=now,
        expires_at=now + ttl,
    )
    session.add(row)
    append_audit_entry(session, actor=actor, action="device.command.queued",
                       target=f"device:{device.id}",
                       details={"command": command_id, "name": wire.name.value,
                                "checks": checks})
    session.flush()
    return _to_model(row)


def pending_commands(
    session: Session, device_id: str, *, now: datetime | None = None
) -> list[Command]:
    """The device's unfinished commands as wire messages, marked delivered; expired ones expire."""
    now = now or utcnow()
    c = DeviceCommandRow
    session.execute(
        update(c).where(c.device_id == device_id,
                        c.status.in_([CommandState.PENDING.value, CommandState.DELIVERED.value]),
                        c.expires_at.is_not(None), c.expires_at < now)
        .values(status=CommandState.EXPIRED.value, finished_at=now)
        .execution_options(synchronize_session=False)
    )
    rows = session.execute(
        select(c).where(c.device_id == device_id,
                        or_(c.status == CommandState.PENDING.value,
                            c.status == CommandState.DELIVERED.value))
        .order_by(c.issued_at, c.id).limit(MAX_PENDING_PER_FETCH)
    ).scalars().all()
    out: list[Command] = []
    for row in rows:
        if row.status == CommandState.PENDING.value:
            row.status = CommandState.DELIVERED.value
            row.delivered_at = now
        out.append(Command(
            id=row.id, name=CommandName(row.name), issued_at_ms=to_millis(row.issued_at),
            expires_at_ms=to_millis(row.expires_at) if row.expires_at else None,
            checks=json.loads(row.checks) if row.checks is not None else None,
        ))
    return out


def record_command_result(
    session: Session, device_id: str, result: CommandResult
) -> QueuedCommand:
    """Store the device's answer to one of its own commands.

    Raises:
        CommandNotFoundError: no such command for this device (another device's included).
        CommandFinishedError: it already has a result (a repeat of the same one is fine).
    """
    row = session.get(DeviceCommandRow, result.id)
    if row is None or row.device_id != device_id or row.name != result.name.value:
        raise CommandNotFoundError("no such command for this device")
    status = CommandState(result.status.value)
    if row.status in FINISHED_COMMAND_STATES:
        if row.status == status.value:
            return _to_model(row)  # the same result delivered twice
        raise CommandFinishedError(f"command already {row.status}")
    row.status = status.value
    row.finished_at = utcnow()
    row.result_detail = result.detail
    row.result_checks = (
        json.dumps([c.model_dump(mode="json", exclude_none=True) for c in result.checks])
        if result.checks is not None else None
    )
    append_audit_entry(session, actor=f"device:{device_id}", action="device.command.result",
                       target=f"device:{device_id}",
                       details={"command": row.id, "name": row.name, "status": status.value})
    session.flush()
    return _to_model(row)


def list_commands(session: Session, device_id: str, *, limit: int = 100) -> list[QueuedCommand]:
    c = DeviceCommandRow
    rows = session.execute(
        select(c).where(c.device_id == device_id).order_by(c.issued_at.desc()).limit(limit)
    ).scalars()
    return [_to_model(row) for row in rows]
