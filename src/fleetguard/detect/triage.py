"""Operators triage alarms: acknowledge, resolve, give a verdict; a false positive teaches.

Lifecycle: ``active -> acknowledged -> resolved`` (resolving an active alarm directly is
fine; the detection service also resolves an alarm whose cause went quiet). A verdict
(true or false positive, with a note) can be given in any state and changed later.

**A false positive changes what is flagged next** (:class:`Feedback`, in force from the
device's next report):

- an allow-list or first-seen alarm: each destination, listener or binary it named becomes
  *allowed on that device* (for every rule) until an operator lifts it;
- any other alarm (a threshold, a learned baseline, peer or model): its rule is
  *suppressed on that device* for a period (``suppress_for``, default 24 hours), or until
  an operator lifts it sooner.

A false positive also resolves the alarm if it is open. Every change is in the audit log.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from fleetguard.auditlog import append_audit_entry
from fleetguard.core.clock import utcnow
from fleetguard.core.errors import ValidationFailedError
from fleetguard.detect.alarm_errors import (
    AlarmNotFoundError,
    AlarmStateConflictError,
    FeedbackNotFoundError,
)
from fleetguard.detect.alarm_records import Alarm, to_alarm
from fleetguard.detect.alarms import NAMING_KINDS, OPEN_STATES, AlarmState, AlarmVerdict
from fleetguard.detect.rules import RuleKind
from fleetguard.store.tables.detect import AlarmRow, DetectionFeedbackRow

DEFAULT_SUPPRESSION = timedelta(hours=24)
MAX_SUPPRESSION = timedelta(days=90)
MAX_NOTE = 2000


@dataclass(frozen=True, slots=True)
class Feedback:
    id: int
    device_id: str
    rule_id: str
    subject: str | None  # allowed on the device; None: the rule is suppressed on it
    until: datetime | None  # None: until lifted
    alarm_id: int | None
    note: str
    created_by: str
    created_at: datetime
    lifted_at: datetime | None
    lifted_by: str | None

    def in_force(self, now: datetime) -> bool:
        return self.lifted_at is None and (self.until is None or self.until > now)


def _to_feedback(row: DetectionFeedbackRow) -> Feedback:
    return Feedback(row.id, row.device_id, row.rule_id, row.subject, row.until, row.alarm_id,
                    row.note, row.created_by, row.created_at, row.lifted_at, row.lifted_by)


def _locked(session: Session, alarm_id: int) -> AlarmRow:
    row = session.execute(
        select(AlarmRow).where(AlarmRow.id == alarm_id).with_for_update()
    ).scalar_one_or_none()
    if row is None:
        raise AlarmNotFoundError(f"no alarm {alarm_id}")
    return row


def _audit(session: Session, row: AlarmRow, actor: str, action: str,
           details: dict[str, Any] | None = None) -> None:
    append_audit_entry(session, actor=actor, action=f"alarm.{action}", target=f"alarm:{row.id}",
                       details={"device_id": row.device_id, "rule_id": row.rule_id,
                                "state": row.state, **(details or {})})


def acknowledge_alarm(session: Session, alarm_id: int, *, actor: str) -> Alarm:
    """An active alarm acknowledged: someone is on it (409 unless it is active)."""
    row = _locked(session, alarm_id)
    if row.state != AlarmState.ACTIVE:
        raise AlarmStateConflictError(f"alarm {alarm_id} is {row.state}, not active")
    row.state = AlarmState.ACKNOWLEDGED.value
    row.acknowledged_at, row.acknowledged_by = utcnow(), actor
    _audit(session, row, actor, "acknowledge")
    return to_alarm(row)


def _resolve(row: AlarmRow, actor: str) -> None:
    row.state = AlarmState.RESOLVED.value
    row.resolved_at, row.resolved_by = utcnow(), actor


def resolve_alarm(session: Session, alarm_id: int, *, actor: str, note: str = "") -> Alarm:
    """An open alarm resolved by an operator (409 if it is resolved already)."""
    row = _locked(session, alarm_id)
    if row.state not in OPEN_STATES:
        raise AlarmStateConflictError(f"alarm {alarm_id} is resolved already")
    _resolve(row, actor)
    _audit(session, row, actor, "resolve", {"note": note[:MAX_NOTE]} if note else None)
    return to_alarm(row)


def _subject_keys(subjects: dict[str, list[Any]]) -> list[str]:
    keys = [f"destination:{d['address']}:{d['port']}" for d in subjects.get("destinations", [])]
    keys += [f"listener:{x['proto']}/{x['port']}" for x in subjects.get("listeners", [])]
    keys += [f"executable:{e.get('sha256') or e['path']}" for e in subjects.get("executables", [])]
    return keys


def _learn_false_positive(
    session: Session, row: AlarmRow, *, actor: str, note: str, suppress_for: timedelta,
) -> list[DetectionFeedbackRow]:
    now = utcnow()
    common = {"device_id": row.device_id, "rule_id": row.rule_id, "alarm_id": row.id,
              "note": note, "created_by": actor, "created_at": now}
    if RuleKind(row.kind) in NAMING_KINDS:
        rows = [DetectionFeedbackRow(subject=key, until=None, **common)
                for key in _subject_keys(json.loads(row.subjects))]
    else:
        rows = [DetectionFeedbackRow(subject=None, until=now + suppress_for, **common)]
    session.add_all(rows)
    session.flush()
    return rows


def give_verdict(
    session: Session, alarm_id: int, verdict: AlarmVerdict, *, actor: str, note: str = "",
    suppress_for: timedelta | None = None,
) -> tuple[Alarm, list[Feedback]]:
    """Record an operator's verdict; a false positive resolves the alarm and teaches
    detection (see the module docstring). Returns the alarm and the feedback made."""
    suppress_for = suppress_for if suppress_for is not None else DEFAULT_SUPPRESSION
    if not timedelta(0) < suppress_for <= MAX_SUPPRESSION:
        raise ValidationFailedError("suppression lasts from a second to 90 days",
                                    field="suppress_for_s")
    row = _locked(session, alarm_id)
    note = note[:MAX_NOTE]
    row.verdict, row.verdict_note = verdict.value, note
    row.verdict_by, row.verdict_at = actor, utcnow()
    learned: list[DetectionFeedbackRow] = []
    if verdict is AlarmVerdict.FALSE_POSITIVE:
        if row.state in OPEN_STATES:
            _resolve(row, actor)
        learned = _learn_false_positive(session, row, actor=actor, note=note,
                                        suppress_for=suppress_for)
    _audit(session, row, actor, "verdict", {
        "verdict": verdict.value, "note": note,
        "allowed": [f.subject for f in learned if f.subject is not None],
        "suppressed_until": next((f.until.isoformat() for f in learned
                                  if f.subject is None and f.until is not None), None)})
    return to_alarm(row), [_to_feedback(f) for f in learned]


def list_feedback(
    session: Session, *, device_id: str | None = None, in_force_only: bool = True,
) -> list[Feedback]:
    """Feedback from false positives, newest first (only what is in force, unless asked)."""
    query = select(DetectionFeedbackRow).order_by(DetectionFeedbackRow.id.desc()).limit(1000)
    if device_id is not None:
        query = query.where(DetectionFeedbackRow.device_id == device_id)
    now = utcnow()
    out = [_to_feedback(r) for r in session.execute(query).scalars()]
    return [f for f in out if f.in_force(now)] if in_force_only else out


def lift_feedback(session: Session, feedback_id: int, *, actor: str) -> Feedback:
    """An allowance or suppression ended by an operator, from the device's next report."""
    row = session.get(DetectionFeedbackRow, feedback_id, with_for_update=True)
    if row is None or row.lifted_at is not None:
        raise FeedbackNotFoundError(f"no feedback {feedback_id} in force")
    row.lifted_at, row.lifted_by = utcnow(), actor
    append_audit_entry(session, actor=actor, action="detection.feedback.lift",
                       target=f"device:{row.device_id}",
                       details={"feedback_id": row.id, "rule_id": row.rule_id,
                                "subject": row.subject})
    return _to_feedback(row)


__all__ = [
    "DEFAULT_SUPPRESSION",
    "MAX_SUPPRESSION",
    "Feedback",
    "acknowledge_alarm",
    "give_verdict",
    "lift_feedback",
    "list_feedback",
    "resolve_alarm",
]
