"""Turn accepted messages into rows: per-device state, deltas, dedupe. No database here."""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from typing import Any

from pydantic import TypeAdapter

from fleetguard.protocol import (
    Connection,
    Heartbeat,
    ListeningSocket,
    TelemetryReport,
)
from fleetguard.telemetry.models import OfflinePolicy, RetentionPolicy

MAX_RECENT_EXECUTABLES = 64
_EWMA = 0.25
_LISTENING = TypeAdapter(list[ListeningSocket])
_CONNECTIONS = TypeAdapter(list[Connection])
_COUNTER_KEYS = ("bytes_in", "bytes_out", "packets_in", "packets_out", "tcp_attempts",
                 "tcp_attempt_fails")


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
    counters: dict[str, int]
    recent_executables: list[dict[str, Any]]


@dataclass(slots=True)
class Item:
    device_id: str
    message: TelemetryReport | Heartbeat
    received_ms: int
    submitted: float  # time.perf_counter() at submit


@dataclass(slots=True)
class Plan:
    report_rows: list[dict[str, Any]] = field(default_factory=list)
    states: dict[str, DeviceState] = field(default_factory=dict)
    snapshots: dict[str, tuple[TelemetryReport, int]] = field(default_factory=dict)
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
    skew_ms = int(retention.max_clock_skew.total_seconds() * 1000)
    raw_ms = int(retention.raw.total_seconds() * 1000)
    for item in items:
        plan.done.append(item)
        base = plan.states.get(item.device_id) or known.get(item.device_id)
        if base is None:  # unknown device: the caller dropped it before planning
            continue
        state = plan.states.get(item.device_id)
        if state is None:
            state = replace(base, counters=dict(base.counters),
                            recent_executables=list(base.recent_executables))
            plan.states[item.device_id] = state
        state.last_seen_ms = max(state.last_seen_ms, item.received_ms)
        message = item.message
        if isinstance(message, Heartbeat):
            state.agent_version = message.agent_version
            continue
        ts = message.collected_at_ms
        if ts > item.received_ms + skew_ms:  # a clock ahead of ours: file it under arrival
            ts = item.received_ms
        if ts < item.received_ms - raw_ms:  # older than raw retention: already rolled up
            plan.expired += 1
            continue
        same_boot = state.boot_id == message.boot_id
        newer = (
            state.last_seq is None
            or message.seq > state.last_seq
            or (not same_boot and (state.last_report_ms or 0) <= message.collected_at_ms)
        )
        if same_boot and message.seq == state.last_seq:
            plan.duplicates += 1
            continue
        counters = _cumulative(message)
        if not newer:  # late, out of order: stored (deduped by the key), no deltas
            plan.report_rows.append(_row(state.key, message, ts, None))
            continue
        deltas: dict[str, int | None]
        if same_boot and state.counters:
            deltas = {k: _delta(counters[k], state.counters.get(k)) for k in _COUNTER_KEYS}
        else:  # first report of a boot: cumulative since boot is the delta
            deltas = dict(counters)
        if (
            same_boot
            and state.last_report_ms is not None
            and message.period_start_ms == state.last_report_ms
            and message.collected_at_ms > message.period_start_ms
        ):
            state.interval_ms = _learn(state.interval_ms,
                                       message.collected_at_ms - message.period_start_ms,
                                       offline)
        state.boot_id = message.boot_id
        state.last_seq = message.seq
        state.last_report_ms = message.collected_at_ms
        state.agent_version = message.agent_version
        state.counters = counters
        if message.new_executables:
            state.recent_executables = _merge_executables(
                state.recent_executables, message, ts
            )
        plan.report_rows.append(_row(state.key, message, ts, deltas))
        plan.snapshots[item.device_id] = (message, ts)  # serialized once, for the latest
    return plan


def state_params(state: DeviceState) -> dict[str, Any]:
    return {
        "k": state.key, "boot_id": state.boot_id, "last_seq": state.last_seq,
        "last_report_ms": state.last_report_ms, "last_seen_ms": state.last_seen_ms,
        "interval_ms": state.interval_ms, "agent_version": state.agent_version,
        "counters": json.dumps(state.counters, separators=(",", ":")),
        "new_executables": json.dumps(state.recent_executables, separators=(",", ":")),
    }


def snapshot_params(snapshot: tuple[TelemetryReport, int]) -> dict[str, Any]:
    report, ts = snapshot
    return {
        "snapshot_ms": ts,
        "listening": _LISTENING.dump_json(report.listening, exclude_none=True).decode(),
        "connections": _CONNECTIONS.dump_json(report.connections, exclude_none=True).decode(),
    }


def _learn(current: int, observed: int, offline: OfflinePolicy) -> int:
    low = int(offline.min_interval.total_seconds() * 1000)
    high = int(offline.max_interval.total_seconds() * 1000)
    observed = min(max(observed, low), high)
    default = int(offline.default_interval.total_seconds() * 1000)
    if current == default:  # nothing learned yet: take the first observation as it is
        return observed
    return round(current + _EWMA * (observed - current))


def _delta(current: int, previous: int | None) -> int | None:
    if previous is None or current < previous:  # reset or wrapped: unknown, not negative
        return None
    return current - previous


def _cumulative(report: TelemetryReport) -> dict[str, int]:
    bytes_in = bytes_out = packets_in = packets_out = 0
    for iface in report.interfaces:
        if iface.name == "lo" or iface.name.startswith("lo:"):
            continue
        bytes_in += iface.bytes_in
        bytes_out += iface.bytes_out
        packets_in += iface.packets_in
        packets_out += iface.packets_out
    net = report.net
    return {
        "bytes_in": bytes_in, "bytes_out": bytes_out, "packets_in": packets_in,
        "packets_out": packets_out,
        "tcp_attempts": net.tcp_active_opens if net else 0,
        "tcp_attempt_fails": net.tcp_attempt_fails if net else 0,
    }


def _row(
    key: int, report: TelemetryReport, ts: int, deltas: dict[str, int | None] | None
) -> dict[str, Any]:
    total = report.memory_total_bytes
    memory = (
        100.0 * (total - min(report.memory_available_bytes, total)) / total if total else None
    )
    disk = max(
        (100.0 * d.used_bytes / d.total_bytes for d in report.disks if d.total_bytes),
        default=None,
    )
    d = deltas or {}
    return {
        "device_key": key,
        "boot": boot_key(report.boot_id),
        "seq": report.seq,
        "ts": ts,
        "cpu_percent": report.cpu_percent,
        "load_1": report.load_1,
        "memory_used_percent": memory,
        "disk_used_percent": disk,
        "bytes_in": _f(d.get("bytes_in")),
        "bytes_out": _f(d.get("bytes_out")),
        "packets_in": _f(d.get("packets_in")),
        "packets_out": _f(d.get("packets_out")),
        "tcp_attempts": _f(d.get("tcp_attempts")) if report.net else None,
        "tcp_attempt_fails": _f(d.get("tcp_attempt_fails")) if report.net else None,
        "connections": float(len(report.connections) + report.connections_omitted),
        "remote_peers": float(len({c.remote_address for c in report.connections})),
        "listening_ports": float(len(report.listening) + report.listening_omitted),
        "auth_failures": _f(report.auth_failures),
        "new_executables": float(len(report.new_executables)),
        "process_count": float(report.process_count),
        "uptime_s": report.uptime_s,
    }


def _f(value: int | None) -> float | None:
    return None if value is None else float(value)


def _merge_executables(
    recent: list[dict[str, Any]], report: TelemetryReport, ts: int
) -> list[dict[str, Any]]:
    fresh = [
        {**exe.model_dump(exclude_none=True), "seen_ms": ts} for exe in report.new_executables
    ]
    keys = {(e["path"], e.get("sha256")) for e in fresh}
    kept = [e for e in recent if (e.get("path"), e.get("sha256")) not in keys]
    return [*kept, *fresh][-MAX_RECENT_EXECUTABLES:]
