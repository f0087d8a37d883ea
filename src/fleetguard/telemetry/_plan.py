"""Turn accepted messages into rows: per-device state, deltas, dedupe. No database here.

Cheap by construction, for it runs in the one writer thread for every report: a report
row is a tuple in :data:`REPORT_COLUMNS` order, and a device row update names only the
columns that changed (the listening and connection lists, usually the same from one
report to the next, are written only when their text differs from what the row holds).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from pydantic import TypeAdapter

from fleetguard.protocol import Connection, ListeningSocket, TelemetryReport
from fleetguard.protocol.counters import (
    Counter,
    CounterReading,
    CounterSource,
    next_reference,
    rates,
    reading_of,
)
from fleetguard.telemetry import _wire
from fleetguard.telemetry.models import OfflinePolicy, RetentionPolicy

MAX_RECENT_EXECUTABLES = 64
_EWMA = 0.25
_LISTENING = TypeAdapter(list[ListeningSocket])
_CONNECTIONS = TypeAdapter(list[Connection])
# The rate columns, one per since-boot counter (the report table's names are Counter's).
RATE_COLUMNS: tuple[str, ...] = tuple(c.value for c in Counter)
REPORT_COLUMNS = (
    "device_key", "boot", "seq", "ts", "cpu_percent", "load_1", "memory_used_percent",
    "disk_used_percent", "connections", "remote_peers", "listening_ports", "auth_failures",
    "new_executables", "process_count", "uptime_s", *RATE_COLUMNS,
)
ReportRow = tuple[Any, ...]
# A device's listening sockets and connections as stored (JSON, ``exclude_none``).
Snapshot = tuple[str, str]
_ExecutableRow = tuple[str, str | None, int | None, int | None]  # path, sha256, size, pid


class _Disk(Protocol):
    @property
    def total_bytes(self) -> int: ...
    @property
    def used_bytes(self) -> int: ...


class _Peer(Protocol):
    @property
    def remote_address(self) -> str: ...


class _Executable(Protocol):
    @property
    def path(self) -> str: ...
    @property
    def sha256(self) -> str | None: ...
    @property
    def size_bytes(self) -> int | None: ...
    @property
    def pid(self) -> int | None: ...


class ReportSource(CounterSource, Protocol):
    """What facts are taken from: a :class:`TelemetryReport`, or its struct (``_wire``)."""

    @property
    def period_start_ms(self) -> int: ...
    @property
    def agent_version(self) -> str: ...
    @property
    def uptime_s(self) -> float: ...
    @property
    def cpu_percent(self) -> float: ...
    @property
    def load_1(self) -> float: ...
    @property
    def memory_total_bytes(self) -> int: ...
    @property
    def memory_available_bytes(self) -> int: ...
    @property
    def process_count(self) -> int: ...
    @property
    def disks(self) -> Sequence[_Disk]: ...
    @property
    def listening(self) -> Sequence[object]: ...
    @property
    def listening_omitted(self) -> int: ...
    @property
    def connections(self) -> Sequence[_Peer]: ...
    @property
    def connections_omitted(self) -> int: ...
    @property
    def new_executables(self) -> Sequence[_Executable]: ...
    @property
    def auth_failures(self) -> int | None: ...


class HeartbeatSource(Protocol):
    @property
    def agent_version(self) -> str: ...


@dataclass(slots=True)  # not frozen: a frozen dataclass costs 2 us more to build, per report
class ReportFacts:
    """What storing a report needs, taken from it as soon as it is validated.

    Ingestion holds reports while the writer works; a validated model of a gateway's
    report is about 150 objects for the collector to walk, this a handful. The socket
    lists are serialized here once, and compared as text with what the device's row holds.
    """

    seq: int
    boot_id: str
    collected_at_ms: int
    period_start_ms: int
    agent_version: str | None
    counters: CounterReading
    # REPORT_COLUMNS from cpu_percent to uptime_s
    cpu_percent: float
    load_1: float
    memory_used_percent: float | None
    disk_used_percent: float | None
    connections: float
    remote_peers: float
    listening_ports: float
    auth_failures: float | None
    new_executable_count: float
    process_count: float
    uptime_s: float
    snapshot: Snapshot
    new_executables: tuple[_ExecutableRow, ...]


@dataclass(frozen=True, slots=True)
class HeartbeatFacts:
    agent_version: str | None


def report_facts(report: ReportSource) -> ReportFacts:
    total = report.memory_total_bytes
    memory = (
        100.0 * (total - min(report.memory_available_bytes, total)) / total if total else None
    )
    disk = max(
        (100.0 * d.used_bytes / d.total_bytes for d in report.disks if d.total_bytes),
        default=None,
    )
    return ReportFacts(
        seq=report.seq, boot_id=report.boot_id, collected_at_ms=report.collected_at_ms,
        period_start_ms=report.period_start_ms, agent_version=report.agent_version,
        counters=reading_of(report),
        cpu_percent=report.cpu_percent, load_1=report.load_1, memory_used_percent=memory,
        disk_used_percent=disk,
        connections=float(len(report.connections) + report.connections_omitted),
        remote_peers=float(len({c.remote_address for c in report.connections})),
        listening_ports=float(len(report.listening) + report.listening_omitted),
        auth_failures=_f(report.auth_failures),
        new_executable_count=float(len(report.new_executables)),
        process_count=float(report.process_count), uptime_s=report.uptime_s,
        snapshot=_snapshot(report),
        new_executables=tuple((e.path, e.sha256, e.size_bytes, e.pid)
                              for e in report.new_executables),
    )


def message_facts(message: ReportSource | HeartbeatSource) -> ReportFacts | HeartbeatFacts:
    if isinstance(message, (_wire.TelemetryStruct, TelemetryReport)):
        return report_facts(message)
    return HeartbeatFacts(message.agent_version)


def _snapshot(report: ReportSource) -> Snapshot:
    """The socket lists as stored: JSON, fields that are None left out (both ways alike)."""
    if isinstance(report, TelemetryReport):
        return (_LISTENING.dump_json(report.listening, exclude_none=True).decode(),
                _CONNECTIONS.dump_json(report.connections, exclude_none=True).decode())
    return (_wire.encode_json(report.listening).decode(),
            _wire.encode_json(report.connections).decode())


def boot_key(boot_id: str) -> int:
    """A signed 64-bit key from the boot id (its first 64 bits), compact in every row."""
    value = int(boot_id[:8] + boot_id[9:13] + boot_id[14:18], 16)
    return value - (1 << 64) if value >= (1 << 63) else value


@dataclass(slots=True)
class DeviceState:
    """What the writer remembers of a device between reports (mirrors telemetry_devices)."""

    key: int
    device_id: str
    boot_id: str | None
    last_seq: int | None
    last_report_ms: int | None
    last_seen_ms: int
    interval_ms: int
    agent_version: str | None
    # The reading the next report's rates are measured from (protocol.counters' reference).
    counters: CounterReading | None
    recent_executables: list[dict[str, Any]]
    # The listening sockets and connections the row holds, when this process wrote them
    # (None: not known here, so the next report's are written whatever they are).
    snapshot: Snapshot | None = None

    def copy(self) -> DeviceState:
        return DeviceState(
            self.key, self.device_id, self.boot_id, self.last_seq, self.last_report_ms,
            self.last_seen_ms, self.interval_ms, self.agent_version, self.counters,
            self.recent_executables, self.snapshot,
        )


def reference_json(reference: CounterReading | None) -> str:
    """The rate reference as the device row's ``counters`` column holds it."""
    if reference is None:
        return "{}"
    return _wire.encode_json({
        "boot": reference.boot_id, "seq": reference.seq, "at": reference.collected_at_ms,
        "net": reference.counters, "if": reference.interfaces,
    }).decode()


def reference_from_json(text: str) -> CounterReading | None:
    """The reference a device row holds; None for none, or for the flat totals stored
    before rates (then the device's next report is a new baseline)."""
    held = json.loads(text)
    if "seq" not in held:
        return None
    return CounterReading(
        boot_id=held["boot"], seq=held["seq"], collected_at_ms=held["at"],
        counters=held["net"], interfaces={k: tuple(v) for k, v in held["if"].items()},
    )


@dataclass(slots=True)
class Item:
    device_id: str
    message: ReportFacts | HeartbeatFacts
    received_ms: int
    submitted: float  # time.perf_counter() at submit
    on_stored: Callable[[], None] | None = None
    # The validated report, kept only when a report hook wants it (memory: see ReportFacts).
    report: TelemetryReport | None = None


@dataclass(slots=True)
class Plan:
    report_rows: list[ReportRow] = field(default_factory=list)
    # The item of each report row, and the rows that may already be stored (their seq is
    # not above every seq the device stored): those are inserted one by one, so that what
    # was new is known row by row. Every other row cannot be stored yet.
    row_items: list[Item] = field(default_factory=list)
    checked: set[int] = field(default_factory=set)
    states: dict[str, DeviceState] = field(default_factory=dict)
    # device -> (latest report, its ts, whether its socket lists differ from the row's)
    snapshots: dict[str, tuple[ReportFacts, int, bool]] = field(default_factory=dict)
    executables_changed: set[str] = field(default_factory=set)
    duplicates: int = 0
    expired: int = 0
    done: list[Item] = field(default_factory=list)


def plan_batch(
    items: list[Item],
    known: dict[str, DeviceState],
    retention: RetentionPolicy,
    offline: OfflinePolicy,
) -> Plan:
    """Rows to insert and the device states after them; ``known`` is left untouched."""
    plan = Plan()
    limits = _Limits.of(retention, offline)
    for item in items:
        plan.done.append(item)
        state = _state_for(plan, known, item.device_id)
        if state is None:  # unknown device: the caller dropped it before planning
            continue
        state.last_seen_ms = max(state.last_seen_ms, item.received_ms)
        message = item.message
        if isinstance(message, HeartbeatFacts):
            state.agent_version = message.agent_version
        else:
            _plan_report(plan, state, item, message, limits)
    _compare_snapshots(plan)
    return plan


def _state_for(plan: Plan, known: dict[str, DeviceState], device_id: str) -> DeviceState | None:
    state = plan.states.get(device_id)
    if state is None:
        base = known.get(device_id)
        if base is None:
            return None
        # A copy: counters and executables are replaced, never changed in place.
        state = plan.states[device_id] = base.copy()
    return state


def _plan_report(
    plan: Plan, state: DeviceState, item: Item, message: ReportFacts, limits: _Limits
) -> None:
    ts = message.collected_at_ms
    if ts > item.received_ms + limits.skew_ms:  # a clock ahead of ours: file it under arrival
        ts = item.received_ms
    if ts < item.received_ms - limits.raw_ms:  # older than raw retention: already rolled up
        plan.expired += 1
        return
    same_boot = state.boot_id == message.boot_id
    if same_boot and message.seq == state.last_seq:
        plan.duplicates += 1
        return
    newer = (
        state.last_seq is None
        or message.seq > state.last_seq
        or (not same_boot and (state.last_report_ms or 0) <= message.collected_at_ms)
    )
    # Every row stored has a seq up to the reference's (the highest planned): one above it
    # cannot be stored yet; one up to it may be (a resend), and is checked row by row.
    ceiling = state.counters.seq if state.counters is not None else state.last_seq
    maybe_stored = ceiling is not None and message.seq <= ceiling
    _, counter_rates = rates(state.counters, message.counters)
    state.counters = next_reference(state.counters, message.counters)
    if not newer:  # late, out of order: stored (deduped by the key), no rates
        _add_row(plan, item, _row(state.key, message, ts, counter_rates), maybe_stored)
        return
    _advance(state, message, same_boot, limits.intervals)
    if message.new_executables:
        state.recent_executables = _merge_executables(state.recent_executables, message, ts)
        plan.executables_changed.add(item.device_id)
    _add_row(plan, item, _row(state.key, message, ts, counter_rates), maybe_stored)
    plan.snapshots[item.device_id] = (message, ts, False)


def _add_row(plan: Plan, item: Item, row: ReportRow, maybe_stored: bool) -> None:
    if maybe_stored:
        plan.checked.add(len(plan.report_rows))
    plan.report_rows.append(row)
    plan.row_items.append(item)


def _advance(
    state: DeviceState, message: ReportFacts, same_boot: bool, bounds: _IntervalBounds
) -> None:
    """The device's state after its newest report; the interval learned when the report
    follows the previous one directly."""
    if (
        same_boot
        and state.last_report_ms is not None
        and message.period_start_ms == state.last_report_ms
        and message.collected_at_ms > message.period_start_ms
    ):
        state.interval_ms = _learn(state.interval_ms,
                                   message.collected_at_ms - message.period_start_ms, bounds)
    state.boot_id = message.boot_id
    state.last_seq = message.seq
    state.last_report_ms = message.collected_at_ms
    state.agent_version = message.agent_version


def _compare_snapshots(plan: Plan) -> None:
    """Whether each device's latest socket lists differ from what its row holds (not from
    an earlier report of this batch)."""
    for device_id, (message, ts, _) in plan.snapshots.items():
        state = plan.states[device_id]
        plan.snapshots[device_id] = (message, ts, state.snapshot != message.snapshot)
        state.snapshot = message.snapshot


def device_update(plan: Plan, device_id: str, state: DeviceState) -> dict[str, Any]:
    """The columns of this device's row to set after the batch, keyed by column ("k": key)."""
    out: dict[str, Any] = {
        "k": state.key, "boot_id": state.boot_id, "last_seq": state.last_seq,
        "last_report_ms": state.last_report_ms, "last_seen_ms": state.last_seen_ms,
        "interval_ms": state.interval_ms, "agent_version": state.agent_version,
        "counters": reference_json(state.counters),
    }
    if device_id in plan.executables_changed:
        out["new_executables"] = _wire.encode_json(state.recent_executables).decode()
    snapshot = plan.snapshots.get(device_id)
    if snapshot is not None:
        report, ts, changed = snapshot
        out["snapshot_ms"] = ts
        if changed:
            out["listening"], out["connections"] = report.snapshot
    return out


@dataclass(frozen=True, slots=True)
class _Limits:
    skew_ms: int
    raw_ms: int
    intervals: _IntervalBounds

    @classmethod
    def of(cls, retention: RetentionPolicy, offline: OfflinePolicy) -> _Limits:
        return cls(int(retention.max_clock_skew.total_seconds() * 1000),
                   int(retention.raw.total_seconds() * 1000), _IntervalBounds.of(offline))


@dataclass(frozen=True, slots=True)
class _IntervalBounds:
    low: int
    high: int
    default: int

    @classmethod
    def of(cls, offline: OfflinePolicy) -> _IntervalBounds:
        return cls(int(offline.min_interval.total_seconds() * 1000),
                   int(offline.max_interval.total_seconds() * 1000),
                   int(offline.default_interval.total_seconds() * 1000))


def _learn(current: int, observed: int, bounds: _IntervalBounds) -> int:
    observed = min(max(observed, bounds.low), bounds.high)
    if current == bounds.default:  # nothing learned yet: take the first observation as it is
        return observed
    return round(current + _EWMA * (observed - current))


def _row(key: int, report: ReportFacts, ts: int, counter_rates: dict[str, float]) -> ReportRow:
    return (
        key, boot_key(report.boot_id), report.seq, ts, report.cpu_percent, report.load_1,
        report.memory_used_percent, report.disk_used_percent, report.connections,
        report.remote_peers, report.listening_ports, report.auth_failures,
        report.new_executable_count, report.process_count, report.uptime_s,
        *[counter_rates.get(column) for column in RATE_COLUMNS],
    )


def _f(value: int | None) -> float | None:
    return None if value is None else float(value)


def _merge_executables(
    recent: list[dict[str, Any]], report: ReportFacts, ts: int
) -> list[dict[str, Any]]:
    fresh = [_executable(path, sha256, size, pid, ts)
             for path, sha256, size, pid in report.new_executables]
    keys = {(e["path"], e.get("sha256")) for e in fresh}
    kept = [e for e in recent if (e.get("path"), e.get("sha256")) not in keys]
    return [*kept, *fresh][-MAX_RECENT_EXECUTABLES:]


def _executable(
    path: str, sha256: str | None, size_bytes: int | None, pid: int | None, ts: int
) -> dict[str, Any]:
    """As ``model_dump(exclude_none=True)`` would give it, plus when it was seen."""
    out: dict[str, Any] = {"path": path}
    if sha256 is not None:
        out["sha256"] = sha256
    if size_bytes is not None:
        out["size_bytes"] = size_bytes
    if pid is not None:
        out["pid"] = pid
    out["seen_ms"] = ts
    return out
