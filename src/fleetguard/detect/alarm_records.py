"""Reading alarms: one by id, filtered and sorted pages, a device's alarms newest first.

What the API and the dashboard's alarm queue and device timeline read. Pages are
keyset-paginated (``store.paging``) on the sort's column plus the id.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import ColumnElement, Select, and_, func, or_, select
from sqlalchemy.orm import Session

from fleetguard.core.severity import Severity
from fleetguard.detect.alarm_errors import AlarmNotFoundError
from fleetguard.detect.alarms import CONFIDENCE_RANK, OPEN_STATES, AlarmState, AlarmVerdict
from fleetguard.detect.rules import Comparison, Confidence, Family, RuleKind
from fleetguard.store.paging import decode_cursor, encode_cursor, page_of, refused_cursor
from fleetguard.store.tables.detect import AlarmRow


@dataclass(frozen=True, slots=True)
class ReportRange:
    """The reports behind an alarm: the device's telemetry from ``first`` to ``last``."""

    first_seq: int
    last_seq: int
    first_collected_ms: int
    last_collected_ms: int


@dataclass(frozen=True, slots=True)
class Alarm:
    id: int
    device_id: str
    cause: str
    rule_id: str
    kind: RuleKind
    family: Family
    severity: Severity
    confidence: Confidence
    state: AlarmState
    summary: str
    description: str
    features: tuple[str, ...]
    observed: float | None
    comparison: Comparison | None
    threshold: float | None
    expected: str
    expected_low: float | None
    expected_high: float | None
    subjects: dict[str, list[Any]]  # destinations, remote_ports, listeners, executables
    since_ms: int
    reports: ReportRange
    report_count: int
    quiet_reports: int
    suppressed: int
    opened_at: datetime
    last_seen_at: datetime
    acknowledged_at: datetime | None
    acknowledged_by: str | None
    resolved_at: datetime | None
    resolved_by: str | None
    verdict: AlarmVerdict | None
    verdict_note: str | None
    verdict_by: str | None
    verdict_at: datetime | None

    @property
    def open(self) -> bool:
        return self.state in OPEN_STATES


def to_alarm(row: AlarmRow) -> Alarm:
    return Alarm(
        id=row.id, device_id=row.device_id, cause=row.cause, rule_id=row.rule_id,
        kind=RuleKind(row.kind), family=Family(row.family), severity=Severity(row.severity),
        confidence=Confidence(row.confidence), state=AlarmState(row.state),
        summary=row.summary, description=row.description,
        features=tuple(json.loads(row.features)), observed=row.observed,
        comparison=Comparison(row.comparison) if row.comparison else None,
        threshold=row.threshold, expected=row.expected, expected_low=row.expected_low,
        expected_high=row.expected_high, subjects=json.loads(row.subjects),
        since_ms=row.since_ms,
        reports=ReportRange(row.first_seq, row.last_seq, row.first_collected_ms,
                            row.last_collected_ms),
        report_count=row.reports, quiet_reports=row.quiet_reports, suppressed=row.suppressed,
        opened_at=row.opened_at, last_seen_at=row.last_seen_at,
        acknowledged_at=row.acknowledged_at, acknowledged_by=row.acknowledged_by,
        resolved_at=row.resolved_at, resolved_by=row.resolved_by,
        verdict=AlarmVerdict(row.verdict) if row.verdict else None,
        verdict_note=row.verdict_note, verdict_by=row.verdict_by, verdict_at=row.verdict_at,
    )


class AlarmSort(StrEnum):
    """Orders of the alarm list: worst, surest or latest first; ties newest alarm first."""

    SEVERITY = "severity"
    CONFIDENCE = "confidence"
    LAST_SEEN = "last_seen"


@dataclass(frozen=True, slots=True)
class AlarmFilter:
    states: frozenset[AlarmState] | None = None  # None: every state
    severity: Severity | None = None  # at least this severe
    confidence: Confidence | None = None  # at least this sure
    device_id: str | None = None
    family: Family | None = None
    kind: RuleKind | None = None


@dataclass(frozen=True, slots=True)
class AlarmPage:
    alarms: list[Alarm]
    next_cursor: str | None


def get_alarm(session: Session, alarm_id: int) -> Alarm:
    row = session.get(AlarmRow, alarm_id)
    if row is None:
        raise AlarmNotFoundError(f"no alarm {alarm_id}")
    return to_alarm(row)


def _filtered(flt: AlarmFilter) -> Select[AlarmRow]:
    query = select(AlarmRow)
    if flt.states is not None:
        query = query.where(AlarmRow.state.in_(sorted(s.value for s in flt.states)))
    if flt.severity is not None:
        query = query.where(AlarmRow.severity_rank >= flt.severity.rank)
    if flt.confidence is not None:
        query = query.where(AlarmRow.confidence_rank >= CONFIDENCE_RANK[flt.confidence])
    if flt.device_id is not None:
        query = query.where(AlarmRow.device_id == flt.device_id)
    if flt.family is not None:
        query = query.where(AlarmRow.family == flt.family.value)
    if flt.kind is not None:
        query = query.where(AlarmRow.kind == flt.kind.value)
    return query


def _sort_column(sort: AlarmSort) -> Any:
    return {AlarmSort.SEVERITY: AlarmRow.severity_rank,
            AlarmSort.CONFIDENCE: AlarmRow.confidence_rank,
            AlarmSort.LAST_SEEN: AlarmRow.last_collected_ms}[sort]


def _sort_key(row: AlarmRow, sort: AlarmSort) -> int:
    return {AlarmSort.SEVERITY: row.severity_rank, AlarmSort.CONFIDENCE: row.confidence_rank,
            AlarmSort.LAST_SEEN: row.last_collected_ms}[sort]


def _after(sort: AlarmSort, cursor: str) -> ColumnElement[bool]:
    key, ident = decode_cursor(cursor, 2)
    if not isinstance(key, int) or not isinstance(ident, int):
        raise refused_cursor()
    column = _sort_column(sort)
    return or_(column < key, and_(column == key, AlarmRow.id < ident))


def list_alarms(
    session: Session, flt: AlarmFilter | None = None, *, sort: AlarmSort = AlarmSort.SEVERITY,
    cursor: str | None = None, limit: int = 50,
) -> AlarmPage:
    """One page of alarms matching ``flt``, in ``sort`` order (descending), newest alarm
    first among equals. Last seen sorts by the collection time of the latest report."""
    query = _filtered(flt or AlarmFilter())
    if cursor:
        query = query.where(_after(sort, cursor))
    rows, more = page_of(
        session, query.order_by(_sort_column(sort).desc(), AlarmRow.id.desc()), limit)
    return AlarmPage(
        alarms=[to_alarm(r) for r in rows],
        next_cursor=encode_cursor([_sort_key(rows[-1], sort), rows[-1].id]) if more and rows
        else None,
    )


def device_alarms(
    session: Session, device_id: str, *, cursor: str | None = None, limit: int = 50,
) -> AlarmPage:
    """A device's alarms, latest first (its timeline of alarms)."""
    return list_alarms(session, AlarmFilter(device_id=device_id), sort=AlarmSort.LAST_SEEN,
                       cursor=cursor, limit=limit)


def count_open_alarms(session: Session, *, device_id: str | None = None) -> dict[Severity, int]:
    """Open (active or acknowledged) alarms by severity, fleet-wide or of one device."""
    query = (select(AlarmRow.severity, func.count())
             .where(AlarmRow.state.in_(sorted(s.value for s in OPEN_STATES)))
             .group_by(AlarmRow.severity))
    if device_id is not None:
        query = query.where(AlarmRow.device_id == device_id)
    counts = dict.fromkeys(Severity, 0)
    for severity, n in session.execute(query).all():
        counts[Severity(severity)] = int(n)
    return counts


__all__ = [
    "Alarm",
    "AlarmFilter",
    "AlarmPage",
    "AlarmSort",
    "ReportRange",
    "count_open_alarms",
    "device_alarms",
    "get_alarm",
    "list_alarms",
    "to_alarm",
]
