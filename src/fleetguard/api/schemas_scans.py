"""Request and response models of the scans, findings and scan-schedule routes."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, Field

from fleetguard.api.schemas import VISIBLE, JsonInt, StrictModel
from fleetguard.findings import Finding, Scan, ScanHost, ScanSchedule

Target = Annotated[str, Field(min_length=1, max_length=300)]


class ScanOptionsIn(StrictModel):
    """Safety options of a scan the server runs (see docs/scan-checks.md, Safety)."""

    # Lax (a number may come as a string): the dashboard's scan form validates its text
    # fields with this model too.
    timeout: float = Field(default=1.5, ge=0.05, le=30)
    concurrency: int = Field(default=256, ge=1, le=4096)
    host_concurrency: int = Field(default=32, ge=1, le=256)
    rate: float = Field(default=200.0, ge=0, le=10000)
    credentials: bool = True
    max_logins: int = Field(default=10, ge=0, le=100)
    login_delay: float = Field(default=0.25, ge=0, le=10)


class ScanStart(StrictModel):
    """Run a scan on the server, in the background."""

    targets: list[Target] = Field(min_length=1, max_length=256)
    ports: str = Field(default="default", min_length=1, max_length=500)
    options: ScanOptionsIn = Field(default_factory=ScanOptionsIn)


class ScanUpload(StrictModel):
    """Store a report made elsewhere (``fleetguard scan --json`` or ``--server``).

    ``report`` is a ``fleetguard.scan/1`` document, read by its one definition
    (``protocol.scan_report.parse_scan_report``, whose errors name ``report.<field>``).
    ``ports`` is the ``--ports`` expression of that scan: with it, a port that stopped
    answering resolves its findings; without it, only ports the report lists do.
    """

    report: dict[str, Any]
    ports: str | None = Field(default=None, min_length=1, max_length=500)


class OutcomeOut(BaseModel):
    opened: int
    updated: int
    reopened: int
    resolved: int
    kept_open: int
    hosts_matched: int
    hosts_unmatched: int


class ScanOut(BaseModel):
    id: str
    source: str
    schedule_id: str | None
    requested_by: str
    status: str
    error: str | None
    targets: list[str]
    options: dict[str, Any]
    progress: float
    progress_done: int
    progress_total: int
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    hosts_total: int
    hosts_up: int
    findings_total: int
    outcome: OutcomeOut | None
    report_size: int

    @classmethod
    def of(cls, s: Scan) -> ScanOut:
        return cls(
            id=s.id, source=s.source.value, schedule_id=s.schedule_id,
            requested_by=s.requested_by, status=s.status.value, error=s.error,
            targets=s.targets, options=s.options, progress=round(s.progress, 4),
            progress_done=s.progress_done, progress_total=s.progress_total,
            created_at=s.created_at, started_at=s.started_at, finished_at=s.finished_at,
            hosts_total=s.hosts_total, hosts_up=s.hosts_up, findings_total=s.findings_total,
            outcome=OutcomeOut(**s.outcome.to_dict()) if s.outcome else None,
            report_size=s.report_size,
        )


class ScanHostOut(BaseModel):
    address: str
    status: str
    device_id: str | None
    matched_by: str
    findings: int

    @classmethod
    def of(cls, h: ScanHost) -> ScanHostOut:
        return cls(address=h.address, status=h.status, device_id=h.device_id,
                   matched_by=h.matched_by.value, findings=h.findings)


class ScanDetailOut(ScanOut):
    hosts: list[ScanHostOut]
    hosts_truncated: bool


class ScanPageOut(BaseModel):
    scans: list[ScanOut]
    next_cursor: str | None


class FindingOut(BaseModel):
    id: int
    device_id: str | None
    host: str
    port: int
    protocol: str
    service: str
    check: str
    severity: str
    title: str
    evidence: str
    remediation: str
    references: list[str]
    state: str
    matched_by: str
    first_seen_at: datetime
    last_seen_at: datetime
    resolved_at: datetime | None
    reopened: int
    first_scan_id: str
    last_scan_id: str

    @classmethod
    def of(cls, f: Finding) -> FindingOut:
        return cls(
            id=f.id, device_id=f.device_id, host=f.host, port=f.port, protocol=f.protocol,
            service=f.service, check=f.check, severity=f.severity.value, title=f.title,
            evidence=f.evidence, remediation=f.remediation, references=f.references,
            state=f.state.value, matched_by=f.matched_by.value, first_seen_at=f.first_seen_at,
            last_seen_at=f.last_seen_at, resolved_at=f.resolved_at, reopened=f.reopened,
            first_scan_id=f.first_scan_id, last_scan_id=f.last_scan_id,
        )


class FindingPageOut(BaseModel):
    findings: list[FindingOut]
    next_cursor: str | None


class FindingSummaryOut(BaseModel):
    open: dict[str, int]
    resolved: dict[str, int]


class ScheduleCreate(StrictModel):
    name: str = Field(min_length=1, max_length=100, pattern=VISIBLE)
    targets: list[Target] = Field(min_length=1, max_length=256)
    ports: str = Field(default="default", min_length=1, max_length=500)
    options: ScanOptionsIn = Field(default_factory=ScanOptionsIn)
    interval_s: JsonInt = Field(ge=60, le=31 * 86400)
    first_run_at: datetime | None = None


class ScheduleOut(BaseModel):
    id: str
    name: str
    targets: list[str]
    ports: str
    options: dict[str, Any]
    interval_s: int
    enabled: bool
    created_by: str
    created_at: datetime
    next_run_at: datetime
    last_run_at: datetime | None
    last_scan_id: str | None

    @classmethod
    def of(cls, s: ScanSchedule) -> ScheduleOut:
        return cls(
            id=s.id, name=s.name, targets=s.targets, ports=s.ports, options=s.options,
            interval_s=s.interval_s, enabled=s.enabled, created_by=s.created_by,
            created_at=s.created_at, next_run_at=s.next_run_at, last_run_at=s.last_run_at,
            last_scan_id=s.last_scan_id,
        )


__all__ = [
    "FindingOut",
    "FindingPageOut",
    "FindingSummaryOut",
    "OutcomeOut",
    "ScanDetailOut",
    "ScanHostOut",
    "ScanOptionsIn",
    "ScanOut",
    "ScanPageOut",
    "ScanStart",
    "ScanUpload",
    "ScheduleCreate",
    "ScheduleOut",
]
