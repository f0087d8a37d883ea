"""What telemetry gives back: metrics, samples, rollups, device status, commands."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any


class Metric(StrEnum):
    """A stored numeric series. Names and ids are stable (the ids are in the rollup table,
    numbered in this order): a new metric is appended, never inserted.

    Network counters (``bytes_*``, ``packets_*``, ``tcp_*``, ``udp_*``, ``errors_*``,
    ``drops_*``) are per-second rates since the previous report of the same boot
    (:mod:`fleetguard.protocol.counters`), interface ones summed over every interface but
    loopback; absent on a new baseline (a device's first report, a reboot, a clock set
    back, a late report) and for a counter that went down. ``auth_failures`` and
    ``new_executables`` count over the report's own period. The rest are gauges at
    collection time. :data:`METRIC_INFO` gives each one's unit and kind.
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
    # Appended with rates (migration 0010).
    TCP_INBOUND = "tcp_inbound"  # connections accepted
    TCP_RESETS = "tcp_resets"  # established connections reset, and resets sent
    TCP_RETRANSMITS = "tcp_retransmits"  # segments retransmitted
    TCP_IN_ERRORS = "tcp_in_errors"
    UDP_IN = "udp_in"
    UDP_OUT = "udp_out"
    UDP_NO_PORT = "udp_no_port"  # datagrams to a port nothing listens on
    UDP_IN_ERRORS = "udp_in_errors"
    ERRORS_IN = "errors_in"
    ERRORS_OUT = "errors_out"
    DROPS_IN = "drops_in"
    DROPS_OUT = "drops_out"


METRIC_IDS: dict[Metric, int] = {metric: number for number, metric in enumerate(Metric, 1)}


class MetricKind(StrEnum):
    """How a metric's values are made. Wire values are stable."""

    GAUGE = "gauge"  # a level at collection time
    RATE = "rate"  # per second, from two since-boot counter readings
    PER_REPORT = "per_report"  # a count over the report's own period


class MetricUnit(StrEnum):
    """The unit of a metric's values. Wire values are stable."""

    PERCENT = "%"
    COUNT = "count"
    TASKS = "tasks"  # load average: runnable and waiting tasks
    SECONDS = "s"
    BYTES_PER_S = "bytes/s"
    PACKETS_PER_S = "packets/s"
    CONNECTIONS_PER_S = "connections/s"
    SEGMENTS_PER_S = "segments/s"
    RESETS_PER_S = "resets/s"
    DATAGRAMS_PER_S = "datagrams/s"


@dataclass(frozen=True, slots=True)
class MetricInfo:
    """What a metric's values mean: unit, kind, and a label for a chart."""

    unit: MetricUnit
    kind: MetricKind
    label: str


def _gauge(unit: MetricUnit, label: str) -> MetricInfo:
    return MetricInfo(unit, MetricKind.GAUGE, label)


def _rate(unit: MetricUnit, label: str) -> MetricInfo:
    return MetricInfo(unit, MetricKind.RATE, label)


U = MetricUnit
METRIC_INFO: dict[Metric, MetricInfo] = {
    Metric.CPU_PERCENT: _gauge(U.PERCENT, "CPU"),
    Metric.LOAD_1: _gauge(U.TASKS, "Load (1 min)"),
    Metric.MEMORY_USED_PERCENT: _gauge(U.PERCENT, "Memory used"),
    Metric.DISK_USED_PERCENT: _gauge(U.PERCENT, "Disk used (fullest mount)"),
    Metric.BYTES_IN: _rate(U.BYTES_PER_S, "Bytes in"),
    Metric.BYTES_OUT: _rate(U.BYTES_PER_S, "Bytes out"),
    Metric.PACKETS_IN: _rate(U.PACKETS_PER_S, "Packets in"),
    Metric.PACKETS_OUT: _rate(U.PACKETS_PER_S, "Packets out"),
    Metric.TCP_ATTEMPTS: _rate(U.CONNECTIONS_PER_S, "TCP connection attempts"),
    Metric.TCP_ATTEMPT_FAILS: _rate(U.CONNECTIONS_PER_S, "TCP attempts failed"),
    Metric.CONNECTIONS: _gauge(U.COUNT, "Connections"),
    Metric.REMOTE_PEERS: _gauge(U.COUNT, "Remote addresses"),
    Metric.LISTENING_PORTS: _gauge(U.COUNT, "Listening sockets"),
    Metric.AUTH_FAILURES: MetricInfo(U.COUNT, MetricKind.PER_REPORT, "Auth failures"),
    Metric.NEW_EXECUTABLES: MetricInfo(U.COUNT, MetricKind.PER_REPORT, "New executables"),
    Metric.PROCESS_COUNT: _gauge(U.COUNT, "Processes"),
    Metric.UPTIME_S: _gauge(U.SECONDS, "Uptime"),
    Metric.TCP_INBOUND: _rate(U.CONNECTIONS_PER_S, "TCP connections accepted"),
    Metric.TCP_RESETS: _rate(U.RESETS_PER_S, "TCP resets"),
    Metric.TCP_RETRANSMITS: _rate(U.SEGMENTS_PER_S, "TCP retransmits"),
    Metric.TCP_IN_ERRORS: _rate(U.SEGMENTS_PER_S, "TCP segments in error"),
    Metric.UDP_IN: _rate(U.DATAGRAMS_PER_S, "UDP in"),
    Metric.UDP_OUT: _rate(U.DATAGRAMS_PER_S, "UDP out"),
    Metric.UDP_NO_PORT: _rate(U.DATAGRAMS_PER_S, "UDP to closed ports"),
    Metric.UDP_IN_ERRORS: _rate(U.DATAGRAMS_PER_S, "UDP in errors"),
    Metric.ERRORS_IN: _rate(U.PACKETS_PER_S, "Interface errors in"),
    Metric.ERRORS_OUT: _rate(U.PACKETS_PER_S, "Interface errors out"),
    Metric.DROPS_IN: _rate(U.PACKETS_PER_S, "Interface drops in"),
    Metric.DROPS_OUT: _rate(U.PACKETS_PER_S, "Interface drops out"),
}
del U


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
