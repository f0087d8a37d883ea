"""Scans on the platform, findings with a lifecycle, schedules: plain data."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from fleetguard.core.severity import Severity


class FindingState(StrEnum):
    OPEN = "open"
    RESOLVED = "resolved"


class ScanStatus(StrEnum):
    RUNNING = "running"
    FINISHED = "finished"
    FAILED = "failed"


class ScanSource(StrEnum):
    UPLOAD = "upload"  # a report made elsewhere (`fleetguard scan --server`, POST)
    SERVER = "server"  # run by the server on an operator's request
    SCHEDULE = "schedule"  # run by the server from a schedule


class MatchMethod(StrEnum):
    SERIAL = "serial"  # a service disclosed a serial number a registered device has
    ADDRESS = "address"  # exactly one registered device has the scanned address
    AMBIGUOUS = "ambiguous"  # several devices have the address, nothing else decides
    UNMATCHED = "unmatched"  # no registered device


#: Checks whose verdict needs login attempts: a scan run with ``--no-credentials``
#: cannot tell that they are gone, so it never resolves them.
CREDENTIAL_CHECKS = frozenset({"default-credentials", "snmp-default-community"})


# --- what the service gives out --------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ScanOutcome:
    """What one scan changed."""

    opened: int = 0
    updated: int = 0
    reopened: int = 0
    resolved: int = 0
    kept_open: int = 0  # open findings of hosts or ports this scan did not cover
    hosts_matched: int = 0
    hosts_unmatched: int = 0

    def to_dict(self) -> dict[str, int]:
        return {
            "opened": self.opened, "updated": self.updated, "reopened": self.reopened,
            "resolved": self.resolved, "kept_open": self.kept_open,
            "hosts_matched": self.hosts_matched, "hosts_unmatched": self.hosts_unmatched,
        }  # fmt: skip


@dataclass(frozen=True, slots=True)
class Scan:
    id: str
    source: ScanSource
    schedule_id: str | None
    requested_by: str
    status: ScanStatus
    error: str | None
    targets: list[str]
    options: dict[str, Any]
    progress_done: int
    progress_total: int
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    hosts_total: int
    hosts_up: int
    findings_total: int
    outcome: ScanOutcome | None
    report_size: int

    @property
    def progress(self) -> float:
        if self.status is not ScanStatus.RUNNING:
            return 1.0
        if self.progress_total <= 0:
            return 0.0
        return min(1.0, self.progress_done / self.progress_total)


@dataclass(frozen=True, slots=True)
class ScanHost:
    address: str
    status: str
    device_id: str | None
    matched_by: MatchMethod
    findings: int


@dataclass(frozen=True, slots=True)
class ScanPage:
    scans: list[Scan]
    next_cursor: str | None


@dataclass(frozen=True, slots=True)
class Finding:
    id: int
    subject: str
    device_id: str | None
    host: str
    port: int
    protocol: str
    service: str
    check: str
    severity: Severity
    title: str
    evidence: str
    remediation: str
    references: list[str]
    state: FindingState
    matched_by: MatchMethod
    first_seen_at: datetime
    last_seen_at: datetime
    resolved_at: datetime | None
    reopened: int
    first_scan_id: str
    last_scan_id: str


@dataclass(frozen=True, slots=True)
class FindingFilter:
    device_id: str | None = None
    unmatched: bool | None = None  # True: only hosts no device claims; False: only devices
    host: str | None = None
    severity: Severity | None = None
    min_severity: Severity | None = None
    check: str | None = None
    state: FindingState | None = None


@dataclass(frozen=True, slots=True)
class FindingPage:
    findings: list[Finding]
    next_cursor: str | None


@dataclass(frozen=True, slots=True)
class DeviceCheck:
    """A device with a given check open: how many such findings, the worst, last seen."""

    device_id: str
    findings: int
    worst: Severity
    last_seen_at: datetime


@dataclass(frozen=True, slots=True)
class ScanSchedule:
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


@dataclass(frozen=True, slots=True)
class DueScan:
    """A schedule that is due, and the scan row created for this run."""

    schedule: ScanSchedule
    scan_id: str


__all__ = [
    "CREDENTIAL_CHECKS",
    "DeviceCheck",
    "DueScan",
    "Finding",
    "FindingFilter",
    "FindingPage",
    "FindingState",
    "MatchMethod",
    "Scan",
    "ScanHost",
    "ScanOutcome",
    "ScanPage",
    "ScanSchedule",
    "ScanSource",
    "ScanStatus",
    "Severity",
]
