"""Request and response models of the alarm and detection rule set routes."""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any

from pydantic import BaseModel, Field

from fleetguard.api.schemas import JSON_INTEGER, StrictModel
from fleetguard.detect.alarm_records import Alarm
from fleetguard.detect.alarms import AlarmVerdict
from fleetguard.detect.rulesets import DryRun, RuleSetVersion
from fleetguard.detect.service import DetectionStats
from fleetguard.detect.triage import MAX_NOTE, Feedback

SuppressFor = Annotated[int, Field(ge=1, le=90 * 86_400), JSON_INTEGER]  # seconds


def _at(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


class StateFilter(StrEnum):
    """Which alarms: one state, or ``open`` (active and acknowledged)."""

    OPEN = "open"
    ACTIVE = "active"
    ACKNOWLEDGED = "acknowledged"
    RESOLVED = "resolved"


class ReportsOut(BaseModel):
    """The device's reports behind the alarm: read them with the telemetry series API
    (``GET /api/v1/devices/{device_id}/telemetry/{metric}?start=...&end=...``)."""

    device_id: str
    first_seq: int
    last_seq: int
    first_collected_at: datetime
    last_collected_at: datetime
    count: int = Field(description="reports the cause fired on")
    telemetry: str = Field(description="the device's stored metrics")
    series_start: datetime = Field(description="a series start that covers the reports")
    series_end: datetime = Field(description="a series end (exclusive) covering them")


class ExpectedOut(BaseModel):
    """What was expected instead: a rule's threshold, an allow-list's content, a learned band."""

    text: str = Field(description="in words, e.g. the allow-list, or 'seen before'")
    comparison: str | None = Field(description="how the observed value broke the threshold")
    threshold: float | None
    low: float | None = Field(description="a learned model's normal band, low end")
    high: float | None


class AlarmOut(BaseModel):
    id: int
    device_id: str
    rule_id: str = Field(description="the rule, or the learned model, that fired")
    kind: str = Field(description="threshold, allow_list, first_seen, baseline, peer, model")
    family: str = Field(description="attack family, e.g. scanning, beacon, miner")
    severity: str
    confidence: str = Field(description="low, medium or high")
    state: str = Field(description="active, acknowledged or resolved")
    summary: str = Field(description="what was seen, e.g. 'tcp_failures_per_s 155 > 2'")
    description: str = Field(description="what the rule says this means")
    features: list[str]
    observed: float | None
    expected: ExpectedOut
    subjects: dict[str, list[Any]] = Field(
        description="new destinations, remote_ports, listeners and executables it named")
    since: datetime = Field(description="when the cause began (its first report)")
    reports: ReportsOut
    quiet_reports: int = Field(description="reports since it last fired")
    suppressed: int = Field(description="new alarms of this device held back by the rate "
                                        "limit, counted here")
    opened_at: datetime
    last_seen_at: datetime
    acknowledged_at: datetime | None
    acknowledged_by: str | None
    resolved_at: datetime | None
    resolved_by: str | None = Field(description="an operator, or 'detection' when it went quiet")
    verdict: str | None = Field(description="true_positive or false_positive")
    verdict_note: str | None
    verdict_by: str | None
    verdict_at: datetime | None

    @classmethod
    def of(cls, a: Alarm) -> AlarmOut:
        r = a.reports
        return cls(
            id=a.id, device_id=a.device_id, rule_id=a.rule_id, kind=a.kind.value,
            family=a.family.value, severity=a.severity.value, confidence=a.confidence.value,
            state=a.state.value, summary=a.summary, description=a.description,
            features=list(a.features), observed=a.observed,
            expected=ExpectedOut(text=a.expected,
                                 comparison=a.comparison.value if a.comparison else None,
                                 threshold=a.threshold, low=a.expected_low,
                                 high=a.expected_high),
            subjects=a.subjects, since=_at(a.since_ms),
            reports=ReportsOut(
                device_id=a.device_id, first_seq=r.first_seq, last_seq=r.last_seq,
                first_collected_at=_at(r.first_collected_ms),
                last_collected_at=_at(r.last_collected_ms), count=a.report_count,
                telemetry=f"/api/v1/devices/{a.device_id}/telemetry",
                series_start=_at(min(a.since_ms, r.first_collected_ms) - 600_000),
                series_end=_at(r.last_collected_ms + 1)),
            quiet_reports=a.quiet_reports, suppressed=a.suppressed, opened_at=a.opened_at,
            last_seen_at=a.last_seen_at, acknowledged_at=a.acknowledged_at,
            acknowledged_by=a.acknowledged_by, resolved_at=a.resolved_at,
            resolved_by=a.resolved_by, verdict=a.verdict.value if a.verdict else None,
            verdict_note=a.verdict_note, verdict_by=a.verdict_by, verdict_at=a.verdict_at)


class AlarmPageOut(BaseModel):
    alarms: list[AlarmOut]
    next_cursor: str | None = Field(description="pass as ?cursor= for the next page")


class ResolveRequest(StrictModel):
    note: str = Field(default="", max_length=MAX_NOTE)


class VerdictRequest(StrictModel):
    verdict: AlarmVerdict
    note: str = Field(default="", max_length=MAX_NOTE, description="why: for the audit log")
    suppress_for_s: SuppressFor | None = Field(
        default=None,
        description="a false positive on a threshold or learned rule: how long the rule "
                    "stays suppressed on the device (default 24 hours)")


class FeedbackOut(BaseModel):
    """What a false positive changed: a subject allowed on the device, or a rule
    suppressed on it (subject null) until ``until`` (null: until lifted)."""

    id: int
    device_id: str
    rule_id: str
    subject: str | None
    until: datetime | None
    alarm_id: int | None
    note: str
    created_by: str
    created_at: datetime
    lifted_at: datetime | None
    lifted_by: str | None

    @classmethod
    def of(cls, f: Feedback) -> FeedbackOut:
        return cls(id=f.id, device_id=f.device_id, rule_id=f.rule_id, subject=f.subject,
                   until=f.until, alarm_id=f.alarm_id, note=f.note, created_by=f.created_by,
                   created_at=f.created_at, lifted_at=f.lifted_at, lifted_by=f.lifted_by)


class VerdictOut(BaseModel):
    alarm: AlarmOut
    feedback: list[FeedbackOut] = Field(description="what the verdict changed in detection")


class RuleSetVersionSummaryOut(BaseModel):
    scope: str = Field(description="fleet, or group:<name>")
    version: int
    active: bool = Field(description="the version in force")
    name: str
    rules: int
    activated_by: str
    activated_at: datetime | None = Field(description="null for the shipped default")

    @classmethod
    def of(cls, v: RuleSetVersion) -> RuleSetVersionSummaryOut:
        return cls(scope=v.scope, version=v.version, active=v.active,
                   name=str(v.document.get("name", "")), rules=v.rule_count,
                   activated_by=v.activated_by, activated_at=v.activated_at)


class RuleSetVersionOut(RuleSetVersionSummaryOut):
    document: dict[str, Any] = Field(description="the rule set as validated, every field "
                                                 "spelled out")

    @classmethod
    def of(cls, v: RuleSetVersion) -> RuleSetVersionOut:
        summary = RuleSetVersionSummaryOut.of(v)
        return cls(**summary.model_dump(), document=v.document)


class RuleSetDiffOut(BaseModel):
    added: list[str]
    removed: list[str]
    changed: list[dict[str, Any]] = Field(
        description="per rule: its id and each field changed, with before and after")
    name: dict[str, str] | None


class DryRunOut(BaseModel):
    scope: str
    valid: bool = Field(description="always true: an invalid document is a 422")
    current_version: int | None = Field(description="the version in force (null: none)")
    next_version: int = Field(description="what activating it would make")
    changes: RuleSetDiffOut

    @classmethod
    def of(cls, d: DryRun) -> DryRunOut:
        return cls(scope=d.scope, valid=True, current_version=d.current_version,
                   next_version=d.next_version,
                   changes=RuleSetDiffOut(**d.diff.to_dict()))


class DetectionStatusOut(BaseModel):
    running: bool
    stats: dict[str, int] | None = Field(
        description="reports observed, processed, dropped (queue full), alarms opened, ...")

    @classmethod
    def of(cls, stats: DetectionStats | None) -> DetectionStatusOut:
        if stats is None:
            return cls(running=False, stats=None)
        return cls(running=True, stats={k: int(getattr(stats, k))
                                        for k in DetectionStats.__dataclass_fields__})
