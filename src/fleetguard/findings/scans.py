"""Scans on the platform: start, progress, fail, read back, list."""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, or_, select
from sqlalchemy.orm import Session

from fleetguard.auditlog import append_audit_entry
from fleetguard.core.clock import utcnow
from fleetguard.findings._records import new_id, scan_row, targets_text, to_scan
from fleetguard.findings.errors import ScanNotFinishedError, ScanNotRunningError
from fleetguard.findings.models import (
    MatchMethod,
    Scan,
    ScanHost,
    ScanPage,
    ScanSource,
    ScanStatus,
)
from fleetguard.findings.reconcile import clip
from fleetguard.store.paging import decode_cursor, encode_cursor, page_of, refused_cursor
from fleetguard.store.tables.findings import ScanHostRow, ScanRow


def create_scan(
    session: Session,
    *,
    actor: str,
    source: ScanSource,
    targets: Sequence[str],
    options: dict[str, Any],
    schedule_id: str | None = None,
) -> Scan:
    """A scan the server is about to run: status running, no progress yet."""
    now = utcnow()
    row = ScanRow(
        id=new_id(), source=source.value, schedule_id=schedule_id, requested_by=actor[:200],
        status=ScanStatus.RUNNING.value, targets=targets_text(targets),
        options=json.dumps(options, default=str), progress_done=0, progress_total=0,
        created_at=now, updated_at=now, started_at=now, hosts_total=0, hosts_up=0,
        findings_total=0, outcome="{}", report_size=0,
    )  # fmt: skip
    session.add(row)
    session.flush()
    append_audit_entry(
        session, actor=actor, action="scan.start", target=f"scan:{row.id}",
        details={"source": source.value, "targets": json.loads(row.targets)[:50],
                 "options": options, "schedule_id": schedule_id},
    )  # fmt: skip
    return to_scan(row)


def record_scan_progress(session: Session, scan_id: str, *, done: int, total: int) -> None:
    """Progress of a running scan (bookkeeping, not audited); also its heartbeat."""
    row = scan_row(session, scan_id)
    if row.status != ScanStatus.RUNNING.value:
        raise ScanNotRunningError(f"scan {row.id} is {row.status}")
    row.progress_done = max(0, done)
    row.progress_total = max(0, total)
    row.updated_at = utcnow()


def fail_scan(session: Session, scan_id: str, *, reason: str, actor: str) -> Scan:
    row = scan_row(session, scan_id, lock=True)
    if row.status != ScanStatus.RUNNING.value:
        raise ScanNotRunningError(f"scan {row.id} is {row.status}")
    now = utcnow()
    row.status = ScanStatus.FAILED.value
    row.error = clip(reason, 2000)
    row.finished_at = row.updated_at = now
    append_audit_entry(
        session, actor=actor, action="scan.fail", target=f"scan:{row.id}",
        details={"reason": row.error},
    )  # fmt: skip
    return to_scan(row)


def fail_stale_scans(
    session: Session, *, silent_for: timedelta, keep: Iterable[str] = (), actor: str
) -> list[str]:
    """Fail running scans whose heartbeat stopped (e.g. the server restarted mid-scan)."""
    cutoff = utcnow() - silent_for
    keep_ids = set(keep)
    rows = list(session.execute(
        select(ScanRow).where(
            ScanRow.status == ScanStatus.RUNNING.value, ScanRow.updated_at < cutoff
        )
    ).scalars())  # fmt: skip
    failed = []
    for row in rows:
        if row.id in keep_ids:
            continue
        fail_scan(session, row.id, reason="interrupted: no progress (server restarted?)",
                  actor=actor)
        failed.append(row.id)
    return failed


def get_scan(session: Session, scan_id: str) -> Scan:
    return to_scan(scan_row(session, scan_id))


def scan_hosts(session: Session, scan_id: str) -> list[ScanHost]:
    row = scan_row(session, scan_id)
    hosts = session.execute(
        select(ScanHostRow).where(ScanHostRow.scan_id == row.id).order_by(ScanHostRow.address)
    ).scalars()
    return [
        ScanHost(h.address, h.status, h.device_id, MatchMethod(h.matched_by), h.findings)
        for h in hosts
    ]


def scan_report(session: Session, scan_id: str) -> dict[str, Any]:
    """The report document of a finished scan, as it was received or produced."""
    row = scan_row(session, scan_id)
    if row.report_gzip is None:
        raise ScanNotFinishedError(f"scan {row.id} is {row.status}: no report")
    document: dict[str, Any] = json.loads(gzip.decompress(row.report_gzip))
    return document


def list_scans(
    session: Session, *, status: ScanStatus | None = None, cursor: str | None = None,
    limit: int = 50,
) -> ScanPage:
    """Newest first, keyset-paginated on (created_at, id)."""
    query = select(ScanRow)
    if status is not None:
        query = query.where(ScanRow.status == status.value)
    if cursor:
        stamp_text, ident = decode_cursor(cursor, 2)
        try:
            stamp = datetime.fromisoformat(str(stamp_text))
        except ValueError:
            raise refused_cursor() from None
        query = query.where(or_(
            ScanRow.created_at < stamp,
            and_(ScanRow.created_at == stamp, ScanRow.id < str(ident)),
        ))  # fmt: skip
    rows, more = page_of(session, query.order_by(ScanRow.created_at.desc(), ScanRow.id.desc()),
                         limit)
    return ScanPage(
        scans=[to_scan(r) for r in rows],
        next_cursor=encode_cursor([rows[-1].created_at.isoformat(), rows[-1].id])
        if more and rows else None,
    )  # fmt: skip


__all__ = [
    "create_scan",
    "fail_scan",
    "fail_stale_scans",
    "get_scan",
    "list_scans",
    "record_scan_progress",
    "scan_hosts",
    "scan_report",
]
