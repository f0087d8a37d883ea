"""What the detection service reads and writes in the database, in its own transaction.

Alarm rows are written only here (and changed by operators through :mod:`triage`). The
database is the truth: an update of an alarm the service believes open is conditional on
its still being open, so an operator who resolved it meanwhile gets a new alarm for the
cause rather than a resolved one reopened.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import and_, func, select, update
from sqlalchemy.orm import Session

from fleetguard.auditlog import append_audit_entry
from fleetguard.core.clock import utcnow
from fleetguard.detect._state_codec import StoredState, decode_state, encode_state
from fleetguard.detect.alarm_records import Alarm, to_alarm
from fleetguard.detect.alarms import (
    CONFIDENCE_RANK,
    DETECTION_ACTOR,
    MINUTE_MS,
    OPEN_STATES,
    AlarmPlan,
    AlarmPolicy,
    AlarmState,
    DeviceFeedback,
    OpenAlarm,
    cause_of,
    merge_subjects,
    subjects_of,
)
from fleetguard.detect.pipeline import Detector
from fleetguard.detect.rules import Verdict
from fleetguard.protocol import TelemetryReport
from fleetguard.store.idset import in_id_set
from fleetguard.store.tables.detect import AlarmRow, DetectionFeedbackRow, DetectorStateRow

_OPEN = sorted(s.value for s in OPEN_STATES)


@dataclass(frozen=True, slots=True)
class AlarmChange:
    """An alarm as it stands after the service opened, updated or resolved it."""

    change: str  # opened | updated | resolved
    alarm: Alarm


#: What a plan did to a row: (opened | updated | resolved, the row), described (to_alarm)
#: only when someone listens.
Touched = tuple[str, AlarmRow]


def describe(touched: Touched) -> AlarmChange:
    """Before the transaction ends: the row is not read after commit."""
    return AlarmChange(touched[0], to_alarm(touched[1]))


# --- reading ---------------------------------------------------------------------------


def open_alarms(
    session: Session, device_ids: Iterable[str], now: datetime,
) -> dict[str, tuple[dict[str, OpenAlarm], list[int]]]:
    """Per device: its open alarms by cause, and when its alarms of the last minute opened."""
    ids = frozenset(device_ids)
    out: dict[str, tuple[dict[str, OpenAlarm], list[int]]] = {d: ({}, []) for d in ids}
    since = now.timestamp() * 1000 - MINUTE_MS
    rows = session.execute(
        select(AlarmRow.id, AlarmRow.device_id, AlarmRow.cause, AlarmRow.quiet_reports,
               AlarmRow.state, AlarmRow.opened_at)
        .where(in_id_set(AlarmRow.device_id, ids))
        .where(AlarmRow.state.in_(_OPEN) | (AlarmRow.opened_at >= _from_ms(since)))
    ).all()
    for ident, device_id, cause, quiet, state, opened_at in rows:
        causes, recent = out[device_id]
        if state in _OPEN:
            causes[cause] = OpenAlarm(int(ident), cause, int(quiet))
        opened_ms = int(opened_at.timestamp() * 1000)
        if opened_ms >= since:
            recent.append(opened_ms)
    return out


def _from_ms(ms: float) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


def feedback_stamp(session: Session) -> tuple[int, int]:
    """Changes when feedback is given or lifted: (rows not lifted, newest id)."""
    count, newest = session.execute(
        select(func.count(), func.max(DetectionFeedbackRow.id))
        .where(DetectionFeedbackRow.lifted_at.is_(None))).one()
    return int(count), int(newest or 0)


def feedback_in_force(session: Session, now: datetime) -> dict[str, DeviceFeedback]:
    rows = session.execute(
        select(DetectionFeedbackRow.device_id, DetectionFeedbackRow.rule_id,
               DetectionFeedbackRow.subject)
        .where(DetectionFeedbackRow.lifted_at.is_(None))
        .where((DetectionFeedbackRow.until.is_(None)) | (DetectionFeedbackRow.until > now))
    ).all()
    allowed: dict[str, set[str]] = {}
    suppressed: dict[str, set[str]] = {}
    for device_id, rule_id, subject in rows:
        if subject is None:
            suppressed.setdefault(device_id, set()).add(rule_id)
        else:
            allowed.setdefault(device_id, set()).add(subject)
    return {d: DeviceFeedback(frozenset(allowed.get(d, ())), frozenset(suppressed.get(d, ())))
            for d in allowed.keys() | suppressed.keys()}


def load_states(
    session: Session, device_ids: Iterable[str], detectors: Mapping[str, Detector],
) -> dict[str, StoredState]:
    """The persisted states of these devices; one that cannot be decoded starts afresh."""
    out: dict[str, StoredState] = {}
    rows = session.execute(select(DetectorStateRow.device_id, DetectorStateRow.state)
                           .where(in_id_set(DetectorStateRow.device_id, frozenset(device_ids))))
    for device_id, blob in rows:
        try:
            out[device_id] = decode_state(bytes(blob), detectors)
        except ValueError:
            continue
    return out


def save_states(
    session: Session, states: Mapping[str, StoredState], detectors: Mapping[str, Detector],
) -> int:
    """Upsert the states (one row per device); returns the bytes written."""
    if not states:
        return 0
    now = utcnow()
    encoded = {d: encode_state(s, detectors) for d, s in states.items()}
    existing = set(session.execute(select(DetectorStateRow.device_id).where(
        in_id_set(DetectorStateRow.device_id, frozenset(encoded)))).scalars())
    for device_id, blob in encoded.items():
        if device_id in existing:
            session.execute(update(DetectorStateRow).where(
                DetectorStateRow.device_id == device_id).values(state=blob, saved_at=now))
        else:
            session.add(DetectorStateRow(device_id=device_id, state=blob, saved_at=now))
    session.flush()
    return sum(len(b) for b in encoded.values())


# --- writing the plan ------------------------------------------------------------------


def _new_row(device_id: str, report: TelemetryReport, verdict: Verdict, now: datetime) -> AlarmRow:
    return AlarmRow(
        device_id=device_id, cause=cause_of(verdict), rule_id=verdict.rule_id,
        kind=verdict.kind.value, family=verdict.family.value,
        severity=verdict.severity.value, severity_rank=verdict.severity.rank,
        confidence=verdict.confidence.value,
        confidence_rank=CONFIDENCE_RANK[verdict.confidence], state=AlarmState.ACTIVE.value,
        summary=verdict.summary, description=verdict.description,
        features=json.dumps([f.value for f in verdict.features]),
        observed=verdict.observed,
        comparison=verdict.comparison.value if verdict.comparison is not None else None,
        threshold=verdict.threshold, expected=verdict.expected,
        expected_low=verdict.expected_low, expected_high=verdict.expected_high,
        subjects=json.dumps(subjects_of(verdict)), since_ms=verdict.since_ms,
        first_seq=report.seq, last_seq=report.seq,
        first_collected_ms=report.collected_at_ms, last_collected_ms=report.collected_at_ms,
        reports=1, quiet_reports=0, suppressed=0, opened_at=now, last_seen_at=now,
    )


def _refresh(row: AlarmRow, report: TelemetryReport, verdict: Verdict, now: datetime,
             policy: AlarmPolicy) -> None:
    row.summary = verdict.summary
    row.observed, row.threshold = verdict.observed, verdict.threshold
    row.expected_low, row.expected_high = verdict.expected_low, verdict.expected_high
    if verdict.severity.rank > row.severity_rank:
        row.severity, row.severity_rank = verdict.severity.value, verdict.severity.rank
    if CONFIDENCE_RANK[verdict.confidence] > row.confidence_rank:
        row.confidence = verdict.confidence.value
        row.confidence_rank = CONFIDENCE_RANK[verdict.confidence]
    named = subjects_of(verdict)
    if named:
        before = json.loads(row.subjects)
        merged = merge_subjects(before, named, policy.max_subjects)
        if merged != before:
            row.subjects = json.dumps(merged)
    row.last_seq = max(row.last_seq, report.seq)
    row.last_collected_ms = max(row.last_collected_ms, report.collected_at_ms)
    row.reports += 1
    row.quiet_reports = 0
    row.last_seen_at = now


def _open(session: Session, device_id: str, report: TelemetryReport, verdict: Verdict,
          now: datetime, causes: dict[str, OpenAlarm], rows: dict[int, AlarmRow]) -> Touched:
    row = _new_row(device_id, report, verdict, now)
    session.add(row)
    session.flush()
    rows[row.id] = row
    causes[row.cause] = OpenAlarm(row.id, row.cause)
    append_audit_entry(session, actor=DETECTION_ACTOR, action="alarm.open",
                       target=f"alarm:{row.id}",
                       details={"device_id": device_id, "rule_id": row.rule_id,
                                "severity": row.severity, "summary": row.summary[:300]})
    return "opened", row


def open_rows(session: Session, alarm_ids: Iterable[int]) -> dict[int, AlarmRow]:
    """The rows of these alarms still open, read once for a batch's updates."""
    ids = sorted(set(alarm_ids))
    rows: dict[int, AlarmRow] = {}
    for start in range(0, len(ids), 500):
        rows.update((row.id, row) for row in session.execute(select(AlarmRow).where(
            and_(AlarmRow.id.in_(ids[start:start + 500]), AlarmRow.state.in_(_OPEN))
        )).scalars())
    return rows


def _still_open(rows: Mapping[int, AlarmRow], alarm_id: int) -> AlarmRow | None:
    row = rows.get(alarm_id)
    return row if row is not None and row.state in _OPEN else None


def apply_plan(
    session: Session, device_id: str, report: TelemetryReport, plan: AlarmPlan,
    causes: dict[str, OpenAlarm], policy: AlarmPolicy, rows: dict[int, AlarmRow],
) -> list[Touched]:
    """Write what ``plan`` decided; ``causes`` (the device's open alarms) kept in step.
    ``rows``: the open alarms' rows (:func:`open_rows`), new ones added."""
    now = utcnow()
    changes: list[Touched] = []
    for alarm_id, verdict in plan.updated:
        row = _still_open(rows, alarm_id)
        if row is None:  # an operator resolved it meanwhile: the cause opens a new alarm
            causes.pop(cause_of(verdict), None)
            changes.append(_open(session, device_id, report, verdict, now, causes, rows))
            continue
        _refresh(row, report, verdict, now, policy)
        causes[row.cause] = OpenAlarm(row.id, row.cause)
        changes.append(("updated", row))
    for verdict in plan.opened:
        changes.append(_open(session, device_id, report, verdict, now, causes, rows))
    for cause, alarm in list(causes.items()):
        if alarm.id in plan.quiet:
            causes[cause] = OpenAlarm(alarm.id, cause, plan.quiet[alarm.id])
        elif alarm.id in plan.resolved:
            del causes[cause]
            changes.extend(_resolve_quiet(session, rows, alarm.id, now, policy))
    if plan.suppressed:
        _count_suppressed(session, device_id, plan.suppressed)
    return changes


def _resolve_quiet(session: Session, rows: Mapping[int, AlarmRow], alarm_id: int,
                   now: datetime, policy: AlarmPolicy) -> list[Touched]:
    row = _still_open(rows, alarm_id)
    if row is None:
        return []
    row.state = AlarmState.RESOLVED.value
    row.resolved_at, row.resolved_by = now, DETECTION_ACTOR
    row.quiet_reports = policy.quiet_reports_to_resolve
    append_audit_entry(session, actor=DETECTION_ACTOR, action="alarm.resolve",
                       target=f"alarm:{row.id}",
                       details={"device_id": row.device_id, "rule_id": row.rule_id,
                                "reason": f"{row.quiet_reports} reports without its cause"})
    return [("resolved", row)]


def _count_suppressed(session: Session, device_id: str, count: int) -> None:
    latest = session.execute(select(AlarmRow).where(AlarmRow.device_id == device_id)
                             .order_by(AlarmRow.id.desc()).limit(1)).scalar_one_or_none()
    if latest is not None:
        latest.suppressed += count


def persist_quiet(session: Session, quiet: Mapping[int, int]) -> None:
    """Quiet counts are kept in memory between reports; written with the states."""
    for alarm_id, count in quiet.items():
        session.execute(update(AlarmRow).where(AlarmRow.id == alarm_id,
                                               AlarmRow.state.in_(_OPEN))
                        .values(quiet_reports=count))


__all__ = [
    "AlarmChange",
    "Touched",
    "apply_plan",
    "describe",
    "feedback_in_force",
    "feedback_stamp",
    "load_states",
    "open_alarms",
    "open_rows",
    "persist_quiet",
    "save_states",
]
