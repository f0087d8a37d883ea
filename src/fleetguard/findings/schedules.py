"""Scan schedules: scans the server runs every interval, and claiming the ones that are due."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from fleetguard.auditlog import append_audit_entry
from fleetguard.core.clock import utcnow
from fleetguard.core.errors import ValidationFailedError
from fleetguard.findings._records import new_id, to_schedule
from fleetguard.findings.errors import ScheduleExistsError, ScheduleNotFoundError
from fleetguard.findings.models import DueScan, ScanSchedule, ScanSource, ScanStatus
from fleetguard.findings.scans import create_scan
from fleetguard.store.paging import row_by_id
from fleetguard.store.tables.findings import ScanRow, ScanScheduleRow

SCHEDULER_ACTOR = "system:scan-scheduler"
MIN_INTERVAL = timedelta(minutes=1)
MAX_INTERVAL = timedelta(days=31)


def _schedule_row(session: Session, schedule_id: str, *, lock: bool = False) -> ScanScheduleRow:
    return row_by_id(session, ScanScheduleRow, schedule_id, ScheduleNotFoundError,
                     "scan schedule", lock=lock)


def create_schedule(
    session: Session,
    *,
    actor: str,
    name: str,
    targets: Sequence[str],
    ports: str,
    options: dict[str, Any],
    interval: timedelta,
    first_run_at: datetime | None = None,
) -> ScanSchedule:
    """A scan the server runs every ``interval``. Targets and ports are validated by the
    caller (the scan package parses them); this stores them."""
    name = name.strip()
    if not name or len(name) > 100 or any(ord(c) < 32 for c in name):
        raise ValidationFailedError("name must be 1-100 printable characters", field="name")
    if not (MIN_INTERVAL <= interval <= MAX_INTERVAL):
        raise ValidationFailedError(
            f"interval must be between {int(MIN_INTERVAL.total_seconds())} s and "
            f"{int(MAX_INTERVAL.total_seconds())} s", field="interval_s",
        )  # fmt: skip
    if not targets:
        raise ValidationFailedError("at least one target", field="targets")
    if session.execute(select(ScanScheduleRow.id).where(ScanScheduleRow.name == name)).first():
        raise ScheduleExistsError(f"a scan schedule named {name!r} exists")
    now = utcnow()
    row = ScanScheduleRow(
        id=new_id(), name=name, targets=json.dumps(list(targets)), ports=ports[:500],
        options=json.dumps(options), interval_s=int(interval.total_seconds()), enabled=True,
        created_by=actor[:200], created_at=now, next_run_at=first_run_at or now,
    )  # fmt: skip
    session.add(row)
    session.flush()
    append_audit_entry(
        session, actor=actor, action="scan_schedule.create", target=f"scan_schedule:{row.id}",
        details={"name": name, "targets": list(targets)[:50], "ports": row.ports,
                 "options": options, "interval_s": row.interval_s},
    )  # fmt: skip
    return to_schedule(row)


def list_schedules(session: Session) -> list[ScanSchedule]:
    rows = session.execute(select(ScanScheduleRow).order_by(ScanScheduleRow.name)).scalars()
    return [to_schedule(r) for r in rows]


def get_schedule(session: Session, schedule_id: str) -> ScanSchedule:
    return to_schedule(_schedule_row(session, schedule_id))


def delete_schedule(session: Session, schedule_id: str, *, actor: str) -> None:
    """Stops future runs; scans it made stay (their schedule id is cleared)."""
    row = _schedule_row(session, schedule_id, lock=True)
    append_audit_entry(
        session, actor=actor, action="scan_schedule.delete", target=f"scan_schedule:{row.id}",
        details={"name": row.name},
    )  # fmt: skip
    session.execute(delete(ScanScheduleRow).where(ScanScheduleRow.id == row.id))


def claim_due_schedules(
    session: Session, *, now: datetime | None = None, limit: int = 10,
    actor: str = SCHEDULER_ACTOR,
) -> list[DueScan]:
    """Schedules due at ``now``: each gets a running scan row and its next run time.

    A schedule whose previous scan still runs is skipped this time (and tried again at
    the next call). The caller runs the scans; rows of scans it never ran are failed by
    :func:`fail_stale_scans`.
    """
    now = now or utcnow()
    query = (
        select(ScanScheduleRow)
        .where(ScanScheduleRow.enabled.is_(True), ScanScheduleRow.next_run_at <= now)
        .order_by(ScanScheduleRow.next_run_at)
        .limit(max(0, limit))
        .with_for_update(skip_locked=True)
    )
    due: list[DueScan] = []
    for row in list(session.execute(query).scalars()):
        if row.last_scan_id is not None:
            last = session.get(ScanRow, row.last_scan_id)
            if last is not None and last.status == ScanStatus.RUNNING.value:
                continue
        scan = create_scan(
            session, actor=actor, source=ScanSource.SCHEDULE, targets=json.loads(row.targets),
            options={"ports": row.ports, **json.loads(row.options or "{}")},
            schedule_id=row.id,
        )  # fmt: skip
        row.last_run_at, row.last_scan_id = now, scan.id
        row.next_run_at = now + timedelta(seconds=row.interval_s)
        due.append(DueScan(to_schedule(row), scan.id))
    return due


__all__ = [
    "SCHEDULER_ACTOR",
    "claim_due_schedules",
    "create_schedule",
    "delete_schedule",
    "get_schedule",
    "list_schedules",
]
