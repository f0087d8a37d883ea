"""Errors of telemetry ingestion and device commands.

    FleetError                              (fleetguard.core.errors)
    ├── InvalidRequestError
    │   └── ProtocolError                   (fleetguard.protocol)
    │       └── MessageRejectedError        a message was refused; ``.reason`` is counted
    │                                       per device (raised as is by ingestion)
    ├── NotFoundError
    │   ├── CommandNotFoundError            no such command for this device
    │   └── MetricNotFoundError             no such metric
    ├── ConflictError
    │   └── CommandFinishedError            a result for a command that already has one
    ├── RateLimitedError
    │   └── IngestOverloadedError           the ingest queue is full: retry later (503)
    └── DependencyError
        └── IngestStoppedError              the ingest service is not running (503)
"""

from __future__ import annotations

from fleetguard.core.errors import (
    ConflictError,
    DependencyError,
    NotFoundError,
    RateLimitedError,
)


class CommandNotFoundError(NotFoundError):
    code = "command_not_found"


class MetricNotFoundError(NotFoundError):
    code = "metric_not_found"


class CommandFinishedError(ConflictError):
    code = "command_finished"


class IngestOverloadedError(RateLimitedError):
    code = "ingest_overloaded"
    http_status = 503


class IngestStoppedError(DependencyError):
    code = "ingest_stopped"
