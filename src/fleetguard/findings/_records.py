"""Rows of the findings tables as plain data, and the small helpers every part shares."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable, Iterator, Sequence

from sqlalchemy.orm import Session

from fleetguard.findings.errors import ScanNotFoundError
from fleetguard.findings.models import (
    Finding,
    FindingState,
    MatchMethod,
    Scan,
    ScanOutcome,
    ScanSchedule,
    ScanSource,
    ScanStatus,
    Severity,
)
from fleetguard.store.paging import row_by_id
from fleetguard.store.tables.findings import FindingRow, ScanRow, ScanScheduleRow

_IN_CHUNK = 400  # ids per IN (...) list: well below every database's parameter limit


def new_id() -> str:
    return str(uuid.uuid4())


def chunks(items: Sequence[str]) -> Iterator[Sequence[str]]:
    for i in range(0, len(items), _IN_CHUNK):
        yield items[i : i + _IN_CHUNK]


def targets_text(targets: Iterable[str]) -> str:
    listed = [str(t)[:300] for t in targets]
    if len(listed) > 1000:
        listed = [*listed[:1000], f"... and {len(listed) - 1000} more"]
    return json.dumps(listed)


def scan_row(session: Session, scan_id: str, *, lock: bool = False) -> ScanRow:
    return row_by_id(session, ScanRow, scan_id, ScanNotFoundError, "scan", lock=lock)


def to_scan(row: ScanRow) -> Scan:
    outcome = json.loads(row.outcome or "{}")
    return Scan(
        id=row.id, source=ScanSource(row.source), schedule_id=row.schedule_id,
        requested_by=row.requested_by, status=ScanStatus(row.status), error=row.error,
        targets=json.loads(row.targets), options=json.loads(row.options or "{}"),
        progress_done=row.progress_done, progress_total=row.progress_total,
        created_at=row.created_at, updated_at=row.updated_at, started_at=row.started_at,
        finished_at=row.finished_at, hosts_total=row.hosts_total, hosts_up=row.hosts_up,
        findings_total=row.findings_total,
        outcome=ScanOutcome(**outcome) if outcome else None, report_size=row.report_size,
    )  # fmt: skip


def to_finding(row: FindingRow) -> Finding:
    return Finding(
        id=row.id, subject=row.subject, device_id=row.device_id, host=row.host, port=row.port,
        protocol=row.protocol, service=row.service, check=row.check,
        severity=Severity(row.severity), title=row.title, evidence=row.evidence,
        remediation=row.remediation, references=json.loads(row.references),
        state=FindingState(row.state), matched_by=MatchMethod(row.matched_by),
        first_seen_at=row.first_seen_at, last_seen_at=row.last_seen_at,
        resolved_at=row.resolved_at, reopened=row.reopened, first_scan_id=row.first_scan_id,
        last_scan_id=row.last_scan_id,
    )  # fmt: skip


def to_schedule(row: ScanScheduleRow) -> ScanSchedule:
    return ScanSchedule(
        id=row.id, name=row.name, targets=json.loads(row.targets), ports=row.ports,
        options=json.loads(row.options or "{}"), interval_s=row.interval_s, enabled=row.enabled,
        created_by=row.created_by, created_at=row.created_at, next_run_at=row.next_run_at,
        last_run_at=row.last_run_at, last_scan_id=row.last_scan_id,
    )  # fmt: skip
