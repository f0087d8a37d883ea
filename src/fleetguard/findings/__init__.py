"""Scan results on the platform: stored scans, findings per device with a lifecycle, schedules.

A report (``fleetguard.scan/1``, :mod:`fleetguard.protocol.scan_report`; from
``fleetguard scan --server``, an upload, or a scan the server ran) is validated, its hosts
matched to registered devices (by a serial a service discloses, else by address), and its
findings opened, updated, resolved or reopened per device across rescans::

    report = parse_scan_report(json.loads(text))        # fleetguard.protocol
    with db.session() as session:
        scan = ingest_report(session, report, actor="operator:alice")
        scan.outcome   # ScanOutcome(opened=3, updated=0, reopened=0, resolved=1, ...)

The lifecycle rules are pure (:mod:`fleetguard.findings.reconcile`); scans, ingestion,
queries and schedules each have their module. This package depends on the registry and
the audit log, never on the scanner: the server-side runner that calls ``fleetguard.scan``
lives in the server package.
"""

from fleetguard.findings.errors import (
    ScanCapacityError,
    ScanNotFinishedError,
    ScanNotFoundError,
    ScanNotRunningError,
    ScheduleExistsError,
    ScheduleNotFoundError,
)
from fleetguard.findings.fleet import (
    RISK_WEIGHTS,
    RiskSnapshot,
    count_devices_with_open_check,
    fleet_risk,
    open_finding_device_ids,
    record_risk_snapshot,
    risk_history,
)
from fleetguard.findings.ingest import close_findings_of_decommissioned_device, ingest_report
from fleetguard.findings.models import (
    CREDENTIAL_CHECKS,
    DeviceCheck,
    DueScan,
    Finding,
    FindingFilter,
    FindingPage,
    FindingState,
    MatchMethod,
    Scan,
    ScanHost,
    ScanOutcome,
    ScanPage,
    ScanSchedule,
    ScanSource,
    ScanStatus,
    Severity,
)
from fleetguard.findings.queries import (
    count_findings_by_severity,
    devices_with_open_check,
    list_findings,
)
from fleetguard.findings.scans import (
    create_scan,
    fail_scan,
    fail_stale_scans,
    get_scan,
    list_scans,
    record_scan_progress,
    scan_hosts,
    scan_report,
)
from fleetguard.findings.schedules import (
    SCHEDULER_ACTOR,
    claim_due_schedules,
    create_schedule,
    delete_schedule,
    get_schedule,
    list_schedules,
)

__all__ = [
    "CREDENTIAL_CHECKS",
    "RISK_WEIGHTS",
    "SCHEDULER_ACTOR",
    "DeviceCheck",
    "DueScan",
    "Finding",
    "FindingFilter",
    "FindingPage",
    "FindingState",
    "MatchMethod",
    "RiskSnapshot",
    "Scan",
    "ScanCapacityError",
    "ScanHost",
    "ScanNotFinishedError",
    "ScanNotFoundError",
    "ScanNotRunningError",
    "ScanOutcome",
    "ScanPage",
    "ScanSchedule",
    "ScanSource",
    "ScanStatus",
    "ScheduleExistsError",
    "ScheduleNotFoundError",
    "Severity",
    "claim_due_schedules",
    "close_findings_of_decommissioned_device",
    "count_devices_with_open_check",
    "count_findings_by_severity",
    "create_scan",
    "create_schedule",
    "delete_schedule",
    "devices_with_open_check",
    "fail_scan",
    "fail_stale_scans",
    "fleet_risk",
    "get_scan",
    "get_schedule",
    "ingest_report",
    "list_findings",
    "list_scans",
    "list_schedules",
    "open_finding_device_ids",
    "record_risk_snapshot",
    "record_scan_progress",
    "risk_history",
    "scan_hosts",
    "scan_report",
]
