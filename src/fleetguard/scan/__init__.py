"""Agentless IoT network audit (``fleetguard scan``).

Public surface::

    from fleetguard.scan import build_options, run_scan, report_document
    report = run_scan(build_options(["192.0.2.0/28"], ports="default"))
    document = report_document(report)   # the stable JSON form (docs/scan-checks.md)

Everything in modules starting with ``_`` is private to this package.
"""

from __future__ import annotations

from fleetguard.scan.checks import CATALOGUE, CheckId, CheckInfo
from fleetguard.scan.errors import (
    CredentialListError,
    InvalidPortSpecError,
    InvalidScanOptionError,
    InvalidTargetError,
    ScanScopeTooLargeError,
)
from fleetguard.scan.models import (
    HostResult,
    ScanReport,
    Service,
    ServiceInfo,
    Severity,
    Target,
)
from fleetguard.scan.options import ScanOptions
from fleetguard.scan.report import to_csv, to_json
from fleetguard.scan.service import ProgressSink, build_options, report_document, run_scan, scan
from fleetguard.scan.targets import expand_target_files, parse_ports, parse_targets

__all__ = [
    "CATALOGUE",
    "CheckId",
    "CheckInfo",
    "CredentialListError",
    "HostResult",
    "InvalidPortSpecError",
    "InvalidScanOptionError",
    "InvalidTargetError",
    "ProgressSink",
    "ScanOptions",
    "ScanReport",
    "ScanScopeTooLargeError",
    "Service",
    "ServiceInfo",
    "Severity",
    "Target",
    "build_options",
    "expand_target_files",
    "parse_ports",
    "parse_targets",
    "report_document",
    "run_scan",
    "scan",
    "to_csv",
    "to_json",
]
