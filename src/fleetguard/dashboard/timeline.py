"""A device's timeline for its page: reports received (per hour), alarms opened, updated,
acknowledged, resolved and judged, findings opened and resolved, and operators' actions
on the device from the audit log; newest first, bounded.

Every source is a domain service's public read: detect's alarm records, findings, the
telemetry series (a count per hour of the one gauge every report carries, ``uptime_s``),
and the audit log. The audit log has no filter by target, so the device's own entries are
looked for among its latest :data:`AUDIT_SCAN` entries (said on the page).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum

from sqlalchemy.orm import Session

from fleetguard import auditlog, findings
from fleetguard.auditlog import AuditEntry
from fleetguard.core.clock import utcnow
from fleetguard.dashboard.alarms import AlarmRisk, alarm_risk
from fleetguard.detect.alarm_records import (
    Alarm,
    AlarmFilter,
    AlarmSort,
    device_alarms,
    list_alarms,
)
from fleetguard.detect.alarms import OPEN_STATES
from fleetguard.findings import FindingFilter
from fleetguard.telemetry import Aggregation, Metric, SeriesQuery, aggregate_series
from fleetguard.telemetry import queries as telemetry

TIMELINE_LIMIT = 100  # events shown
ALARMS_READ = 50  # the device's latest alarms the timeline and the Alarms section read
FINDINGS_READ = 100
AUDIT_SCAN = 1000  # the latest audit entries searched for the device's own
REPORT_WINDOW = timedelta(hours=24)  # reports received, counted per hour
REPORT_STEP = timedelta(hours=1)
SHOWN_OPEN_ALARMS = 20
OPERATOR_ACTORS = ("operator:", "cli:")  # actors that are people (a session, a token, the CLI)


class EventKind(StrEnum):
    REPORTS = "reports"
    ALARM = "alarm"
    FINDING = "finding"
    OPERATOR = "operator"
    EVENT = "event"  # audited, by the device itself or the system


@dataclass(frozen=True, slots=True)
class TimelineEvent:
    at: datetime
    kind: EventKind
    title: str
    detail: str = ""
    href: str | None = None
    actor: str | None = None


@dataclass(frozen=True, slots=True)
class DeviceAlarms:
    """The device page's Alarms section and timeline."""

    open_alarms: list[Alarm]
    risk: AlarmRisk
    events: list[TimelineEvent]
    audit_scanned: int | None  # None: the viewer may not read the audit log
    limit: int  # events shown at most
    reports_window_h: int = field(default=int(REPORT_WINDOW.total_seconds() // 3600))


def _alarm_events(alarm: Alarm) -> list[TimelineEvent]:
    href = f"/alarms/{alarm.id}"
    title = f"{alarm.severity.value} {alarm.family.value.replace('_', ' ')} ({alarm.rule_id})"
    out = [TimelineEvent(alarm.opened_at, EventKind.ALARM, f"Alarm opened: {title}",
                         alarm.summary, href, "detection")]
    if alarm.report_count > 1:
        out.append(TimelineEvent(alarm.last_seen_at, EventKind.ALARM,
                                 f"Alarm updated: {title}",
                                 f"{alarm.report_count} reports so far", href, "detection"))
    if alarm.acknowledged_at is not None:
        out.append(TimelineEvent(alarm.acknowledged_at, EventKind.OPERATOR,
                                 f"Alarm acknowledged: {title}", "", href,
                                 alarm.acknowledged_by))
    if alarm.resolved_at is not None:
        out.append(TimelineEvent(alarm.resolved_at, EventKind.ALARM, f"Alarm resolved: {title}",
                                 "", href, alarm.resolved_by))
    if alarm.verdict is not None and alarm.verdict_at is not None:
        verdict = alarm.verdict.value.replace("_", " ")
        out.append(TimelineEvent(alarm.verdict_at, EventKind.OPERATOR,
                                 f"Alarm judged a {verdict}: {title}", alarm.verdict_note or "",
                                 href, alarm.verdict_by))
    return out


def _finding_events(finding: findings.Finding) -> list[TimelineEvent]:
    title = f"{finding.severity.value} {finding.check}: {finding.title}"
    href = "#findings"
    out = [TimelineEvent(finding.first_seen_at, EventKind.FINDING, f"Finding opened: {title}",
                         f"{finding.protocol}/{finding.port}", href, "scan")]
    if finding.resolved_at is not None:
        out.append(TimelineEvent(finding.resolved_at, EventKind.FINDING,
                                 f"Finding resolved: {title}", "", href, "scan"))
    return out


def _report_events(session: Session, device_id: str, now: datetime) -> list[TimelineEvent]:
    start = (now - REPORT_WINDOW).replace(minute=0, second=0, microsecond=0)
    query = SeriesQuery(Metric.UPTIME_S, start, now, REPORT_STEP, Aggregation.COUNT)
    status = telemetry.device_status(session, device_id)
    # an hour's event is at its end, or at the last report for the hour that holds it
    last = status.last_report_at if status and status.last_report_at else now
    out = []
    for point in aggregate_series(session, device_id, query):
        n = int(point.value)
        end = min(point.at + REPORT_STEP, last, now)
        out.append(TimelineEvent(end, EventKind.REPORTS,
                                 f"{n} report{'s' if n != 1 else ''} received",
                                 f"from {point.at:%H:%M} to {end:%H:%M} UTC", "#h-charts"))
    return out


def _concerns(entry: AuditEntry, device_id: str) -> bool:
    """An operator's entry about the device (alarm entries are read from the alarms)."""
    if entry.action.startswith("alarm."):
        return False
    if entry.target == f"device:{device_id}":
        return True
    return device_id in (entry.details.get("device"), entry.details.get("device_id"))


def _kind_of(actor: str) -> EventKind:
    return EventKind.OPERATOR if actor.startswith(OPERATOR_ACTORS) else EventKind.EVENT


def _reason(entry: AuditEntry) -> str:
    reason = entry.details.get("reason")
    return reason if isinstance(reason, str) else ""


def _audit_events(session: Session, device_id: str) -> tuple[list[TimelineEvent], int]:
    entries = auditlog.list_audit_entries(session, limit=AUDIT_SCAN, newest_first=True)
    out = [TimelineEvent(e.at, _kind_of(e.actor), e.action, _reason(e),
                         f"/audit?action={e.action}", e.actor)
           for e in entries if _concerns(e, device_id)]
    return out, len(entries)


def device_alarms_and_timeline(
    session: Session, device_id: str, *, can_read_audit: bool, now: datetime | None = None,
) -> DeviceAlarms:
    """The device's open alarms (worst first), their risk, and its timeline."""
    now = now or utcnow()
    alarms = device_alarms(session, device_id, limit=ALARMS_READ).alarms
    events = [e for a in alarms for e in _alarm_events(a)]
    listed = findings.list_findings(session, FindingFilter(device_id=device_id),
                                    limit=FINDINGS_READ).findings
    events += [e for f in listed for e in _finding_events(f)]
    events += _report_events(session, device_id, now)
    scanned = None
    if can_read_audit:
        operator_events, scanned = _audit_events(session, device_id)
        events += operator_events
    events.sort(key=lambda e: e.at, reverse=True)
    open_alarms = list_alarms(session, AlarmFilter(states=OPEN_STATES, device_id=device_id),
                              sort=AlarmSort.SEVERITY, limit=SHOWN_OPEN_ALARMS).alarms
    return DeviceAlarms(open_alarms, alarm_risk(session, devices=1, device_id=device_id),
                        events[:TIMELINE_LIMIT], scanned, TIMELINE_LIMIT)
