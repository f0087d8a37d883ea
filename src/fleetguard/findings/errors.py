"""Errors of the findings domain.

    FleetError
    ├── NotFoundError
    │   ├── ScanNotFoundError
    │   └── ScheduleNotFoundError
    ├── ConflictError
    │   ├── ScanNotRunningError       a result or progress for a scan that already ended
    │   ├── ScanNotFinishedError      the report of a scan that has none yet
    │   └── ScheduleExistsError
    └── RateLimitedError
        └── ScanCapacityError         too many scans running on this server

A report that is not ``fleetguard.scan/1`` is refused by its reader, with the errors of
:mod:`fleetguard.protocol.scan_report` (InvalidReportError, ReportTooLargeError).
"""

from __future__ import annotations

from fleetguard.core.errors import (
    ConflictError,
    NotFoundError,
    RateLimitedError,
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


__all__ = [
    "ScanCapacityError",
    "ScanNotFinishedError",
    "ScanNotFoundError",
    "ScanNotRunningError",
    "ScheduleExistsError",
    "ScheduleNotFoundError",
]
