"""Reading findings: filtered pages worst first, counts by severity, devices with a check."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Select, and_, func, or_, select
from sqlalchemy.orm import Session

from fleetguard.core.clock import as_utc
from fleetguard.findings._records import to_finding
from fleetguard.findings.models import (
    DeviceCheck,
    FindingFilter,
    FindingPage,
    FindingState,
    Severity,
)
from fleetguard.store.paging import decode_cursor, encode_cursor, page_of, refused_cursor
from fleetguard.store.tables.findings import FindingRow


def _finding_query(flt: FindingFilter) -> Select[FindingRow]:
    query = select(FindingRow)
    if flt.device_id is not None:
        query = query.where(FindingRow.device_id == flt.device_id)
    if flt.unmatched is True:
        query = query.where(FindingRow.device_id.is_(None))
    elif flt.unmatched is False:
        query = query.where(FindingRow.device_id.is_not(None))
    if flt.host:
        query = query.where(FindingRow.host == flt.host)
    if flt.severity is not None:
        query = query.where(FindingRow.severity == flt.severity.value)
    if flt.min_severity is not None:
        query = query.where(FindingRow.severity_rank >= flt.min_severity.rank)
    if flt.check:
        query = query.where(FindingRow.check == flt.check)
    if flt.state is not None:
        query = query.where(FindingRow.state == flt.state.value)
    return query


def list_findings(
    session: Session, flt: FindingFilter | None = None, *, cursor: str | None = None,
    limit: int = 100,
) -> FindingPage:
    """Worst first, then oldest first; keyset-paginated on (severity rank, id)."""
    query = _finding_query(flt or FindingFilter())
    if cursor:
        rank, ident = decode_cursor(cursor, 2)
        if not isinstance(rank, int) or not isinstance(ident, int):
            raise refused_cursor()
        query = query.where(or_(
            FindingRow.severity_rank < rank,
            and_(FindingRow.severity_rank == rank, FindingRow.id > ident),
        ))  # fmt: skip
    rows, more = page_of(
        session, query.order_by(FindingRow.severity_rank.desc(), FindingRow.id), limit
    )
    return FindingPage(
        findings=[to_finding(r) for r in rows],
        next_cursor=encode_cursor([rows[-1].severity_rank, rows[-1].id]) if more and rows
        else None,
    )  # fmt: skip


def count_findings_by_severity(
    session: Session, *, state: FindingState | None = FindingState.OPEN,
    device_id: str | None = None,
) -> dict[Severity, int]:
    query = select(FindingRow.severity, func.count()).group_by(FindingRow.severity)
    if state is not None:
        query = query.where(FindingRow.state == state.value)
    if device_id is not None:
        query = query.where(FindingRow.device_id == device_id)
    counts = {s: 0 for s in Severity}
    for severity, n in session.execute(query).all():
        counts[Severity(severity)] = int(n)
    return counts


def devices_with_open_check(session: Session, check: str) -> list[DeviceCheck]:
    """Devices with ``check`` open (e.g. default-credentials), worst and most recent first."""
    rows = session.execute(
        select(
            FindingRow.device_id, func.count(), func.max(FindingRow.severity_rank),
            func.max(FindingRow.last_seen_at),
        )
        .where(FindingRow.check == check, FindingRow.state == FindingState.OPEN.value,
               FindingRow.device_id.is_not(None))
        .group_by(FindingRow.device_id)
    ).all()  # fmt: skip
    by_rank = {s.rank: s for s in Severity}
    out = [
        DeviceCheck(device_id=str(d), findings=int(n), worst=by_rank[int(rank)],
                    last_seen_at=_aware(seen))
        for d, n, rank, seen in rows
    ]  # fmt: skip
    out.sort(key=lambda c: (-c.worst.rank, -c.last_seen_at.timestamp(), c.device_id))
    return out


def _aware(value: Any) -> datetime:
    if isinstance(value, str):  # SQLite returns max() of a DateTime as text
        value = datetime.fromisoformat(value)
    return as_utc(value)


__all__ = ["count_findings_by_severity", "devices_with_open_check", "list_findings"]
