"""What telemetry gives back: metrics, samples, rollups, device status, commands."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any


class Metric(StrEnum):
    """A stored numeric series. Names and ids are stable (the ids are in the rollup table).

    Network counters (``bytes_*``, ``packets_*``, ``tcp_*``) are deltas since the previous
    report of the same boot, summed over every interface except loopback; the first
    report of a boot counts from boot. ``auth_failures`` and ``new_executables`` cover
    the report's own window. The rest are gauges at collection time.
    """

    CPU_PERCENT = "cpu_percent"
    LOAD_1 = "load_1"
    MEMORY_USED_PERCENT = "memory_used_percent"
    DISK_USED_PERCENT = "disk_used_percent"  # the fullest mount
    BYTES_IN = "bytes_in"
    BYTES_OUT = "bytes_out"
    PACKETS_IN = "packets_in"
    PACKETS_OUT = "packets_out"
    TCP_ATTEMPTS = "tcp_attempts"  # outbound connection attempts (SYNs sent)
    TCP_ATTEMPT_FAILS = "tcp_attempt_fails"
    CONNECTIONS = "connections"  # established, omitted ones included
    REMOTE_PEERS = "remote_peers"  # distinct remote addresses among them
    LISTENING_PORTS = "listening_ports"
    AUTH_FAILURES = "auth_failures"
    NEW_EXECUTABLES = "new_executables"
    PROCESS_COUNT = "process_count"
    UPTIME_S = "uptime_s"


METRIC_IDS: dict[Metric, int] = {metric: number for number, metric in enumerate(Metric, 1)}


@dataclass(frozen=True, slots=True)
class RetentionPolicy:
    """Raw reports for ``raw``, then hourly rollups (min/max/avg) for ``rollups``."""

    raw: timedelta = timedelta(days=7)
    rollups: timedelta = timedelta(days=400)
    max_clock_skew: timedelta = timedelta(minutes=5)


@dataclass(frozen=True, slots=True)
class OfflinePolicy:
    """Offline after ``missed`` reporting intervals without a message."""

    missed: int = 3
    default_interval: timedelta = timedelta(seconds=300)
    min_interval: timedelta = timedelta(seconds=1)
    max_interval: timedelta = timedelta(days=1)


@dataclass(frozen=True, slots=True)
class Sample:
    at: datetime
    value: float


@dataclass(frozen=True, slots=True)
class RollupPoint:
    hour: datetime
    samples: int
    min: float
    max: float
    avg: float


class Aggregation(StrEnum):
    """How the samples within one step of a series become its point. Wire values are stable."""

    AVG = "avg"
    MIN = "min"
    MAX = "max"
    LAST = "last"  # the latest sample of the step
    SUM = "sum"
    COUNT = "count"  # how many samples the step holds


@dataclass(frozen=True, slots=True)
class MetricSummary:
    """One stored metric of a device: how much of it there is, and its latest raw value."""

    metric: Metric
    samples: int  # raw samples, plus the samples hourly rollups stand for
    first_at: datetime
    last_at: datetime
    latest: Sample | None  # None when only hourly rollups remain


@dataclass(frozen=True, slots=True)
class SeriesQuery:
    """A range of one metric, cut into steps from ``start``: [start + k*step, + step)."""

    metric: Metric
    start: datetime
    end: datetime
    step: timedelta
    aggregation: Aggregation = Aggregation.AVG


@dataclass(frozen=True, slots=True)
class Snapshot:
    """The latest full lists a device reported (new executables: the most recent seen)."""

    at: datetime | None
    listening: list[dict[str, Any]]
    connections: list[dict[str, Any]]
    new_executables: list[dict[str, Any]]


@dataclass(frozen=True, slots=True)
class DeviceTelemetryStatus:
    device_id: str
    online: bool
    online_changed_at: datetime
    last_seen_at: datetime
    last_report_at: datetime | None
    interval: timedelta
    boot_id: str | None
    last_seq: int | None
    agent_version: str | None


@dataclass(frozen=True, slots=True)
class SweepResult:
    went_offline: list[str] = field(default_factory=list)
    came_online: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class CompactionResult:
    raw_cutoff: datetime
    rollups_written: int
    raw_deleted: int
    rollups_deleted: int


@dataclass(frozen=True, slots=True)
class IngestStats:
    """Counters of one ingest service since it started."""

    accepted: int
    stored: int
    duplicates: int
    dropped_expired: int
    dropped_unknown_device: int
    rejected: int
    queued: int
    batches: int
    write_errors: int
    report_hook_errors: int = 0  # times the report hook raised (each report still stored)


class CommandState(StrEnum):
    PENDING = "pending"  # queued, not yet fetched
    DELIVERED = "delivered"  # fetched by the device at least once, no result yet
    OK = "ok"
    FAILED = "failed"
    REJECTED = "rejected"
    EXPIRED = "expired"


FINISHED_COMMAND_STATES = frozenset(
    {CommandState.OK, CommandState.FAILED, CommandState.REJECTED, CommandState.EXPIRED}
)


@dataclass(frozen=True, slots=True)
class QueuedCommand:
    id: str
    device_id: str
    name: str
    checks: list[str] | None
    state: CommandState
    issued_by: str
    issued_at: datetime
    expires_at: datetime | None
    delivered_at: datetime | None
    finished_at: datetime | None
    detail: str | None
    check_results: list[dict[str, Any]] | None
