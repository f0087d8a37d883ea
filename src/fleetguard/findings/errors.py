"""Errors of the findings domain.

    FleetError
    ├── NotFoundError
    │   ├── ScanNotFoundError
    │   └── ScheduleNotFoundError
    ├── ConflictError
    │   ├── ScanNotRunningError       a result or progress for a scan that already ended
    │   ├── ScanNotFinishedError      the report of a scan that has none yet
    │   └── ScheduleExistsError
    ├── RateLimitedError
    │   └── ScanCapacityError         too many scans running on this server
    ├── PayloadTooLargeError
    │   └── ReportTooLargeError
    └── ValidationFailedError
        └── InvalidReportError        a report document that is not fleetguard.scan/1
"""

from __future__ import annotations

from fleetguard.core.errors import (
    ConflictError,
    NotFoundError,
    PayloadTooLargeError,
    RateLimitedError,
    ValidationFailedError,
)


class ScanNotFoundError(NotFoundError):
    code = "scan_not_found"


class ScheduleNotFoundError(NotFoundError):
    code = "scan_schedule_not_found"


class ScanNotRunningError(ConflictError):
    code = "scan_not_running"


class ScanNotFinishedError(ConflictError):
    code = "scan_not_finished"


class ScheduleExistsError(ConflictError):
    code = "scan_schedule_exists"


class ScanCapacityError(RateLimitedError):
    code = "scan_capacity"


class ReportTooLargeError(PayloadTooLargeError):
    code = "report_too_large"


class InvalidReportError(ValidationFailedError):
    code = "invalid_report"


__all__ = [
    "InvalidReportError",
    "ReportTooLargeError",
    "ScanCapacityError",
    "ScanNotFinishedError",
    "ScanNotFoundError",
    "ScanNotRunningError",
    "ScheduleExistsError",
    "ScheduleNotFoundError",
]
