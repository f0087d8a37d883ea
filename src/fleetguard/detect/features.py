"""Per-report features of one device, from its consecutive telemetry reports. Pure.

``extract_features(state, report)`` returns the report's :class:`FeatureVector` and the
device's next :class:`DeviceFeatureState`; no clock, no database, no I/O.

Counters (cumulative since boot) become per-second rates over the gap to the previous
report of the same boot: that gap, not ``period_start_ms``, is what the difference of two
cumulative readings covers, also when a report in between was lost. A report is a *new
baseline* (rates absent: not zero, not a spike; gauges still present) when it is the
device's first, follows a reboot (another ``boot_id``), or comes no later than the
previous one (a clock set back). A report that is not after the previous one in sequence
(``seq``: late, or a duplicate) has no rates either, and leaves the previous one the
reference for the next. A counter that went down (a reset or a wrap) gives no rate for
that one feature. Interface traffic is summed over every interface but loopback; an interface that
was not in the previous report counts from the next one (its since-boot total is no rate).

What is *new* (remote addresses and ports, listeners, executables) is new against the
device's history, across reboots. The device's first report has no history: it is learned,
and its novelty features are absent and its lists of new things empty, as its rates are.

Remote addresses count every connection; remote *ports* count outbound connections only,
because the remote port of an inbound connection (one whose local port is listening) is the
client's ephemeral port and changes every time. What is new among addresses and ports is
among outbound connections (*destinations*): where the device reaches out to is its own
behaviour, while a new client connecting in (a field device joining a gateway) is not.

A report from an agent that samples between reports (``destinations_seen``,
``listeners_opened``, ``processes`` present) is read for the whole period, not only its
instant: the destinations are those seen over the period as well as the open connections;
a listener opened during the period counts as added (and, on a port never listened on, as
a first listener) even if it closed before the report, while "removed" and the reference
for the next report stay what listens at the report; and ``top_process_cpu_percent`` is the
busiest process's own CPU over the period (a percent of one core, so up to 100 times the
cores), which machine-wide CPU hides on a device shared with containers or neighbours. A
report without these fields is read as before (its instant), and has no
``top_process_cpu_percent``.

State memory: what the next report needs (counters, boot, listening set) plus four bounded
sets of what the device has ever shown (outbound remote addresses and ports, listeners,
executables), each capped at :data:`KNOWN_CAP` entries, the oldest evicted first. Measured
with ``tracemalloc`` (``tests/detect/test_feature_state_size.py``, ``pytest -s`` prints it):
about 2.5 KB for a simulated camera or sensor, about 4 KB for a gateway with 20-40 peers,
and about 1.5 MB for a device whose four sets are all full (4,096 distinct addresses,
ports, listeners and binaries each: a device that scans or churns, not a normal one).
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Mapping
from dataclasses import dataclass, replace
from enum import StrEnum
from types import MappingProxyType
from typing import TypeVar

from fleetguard.protocol import TelemetryReport
from fleetguard.protocol.counters import (
    NewBaseline,
    counter_rates,
    interface_rates,
    new_baseline,
)

KNOWN_CAP = 4096  # entries per known set; beyond it the oldest is forgotten
LOOPBACK = "lo"


class Feature(StrEnum):
    """A feature's stable name (stored, used in rules and alarms: never renamed)."""

    BYTES_IN_PER_S = "bytes_in_per_s"
    BYTES_OUT_PER_S = "bytes_out_per_s"
    PACKETS_IN_PER_S = "packets_in_per_s"
    PACKETS_OUT_PER_S = "packets_out_per_s"
    TCP_ATTEMPTS_PER_S = "tcp_attempts_per_s"
    TCP_FAILURES_PER_S = "tcp_failures_per_s"
    TCP_INBOUND_PER_S = "tcp_inbound_per_s"
    TCP_RESETS_PER_S = "tcp_resets_per_s"
    TCP_RETRANSMITS_PER_S = "tcp_retransmits_per_s"
    UDP_IN_PER_S = "udp_in_per_s"
    UDP_OUT_PER_S = "udp_out_per_s"
    UDP_NO_PORT_PER_S = "udp_no_port_per_s"
    CPU_PERCENT = "cpu_percent"
    PROCESS_COUNT = "process_count"
    AUTH_FAILURES = "auth_failures"
    CONNECTIONS = "connections"
    REMOTE_ADDRESSES = "remote_addresses"
    REMOTE_PORTS = "remote_ports"
    NEW_REMOTE_ADDRESSES = "new_remote_addresses"
    NEW_REMOTE_PORTS = "new_remote_ports"
    LISTENERS_ADDED = "listeners_added"
    LISTENERS_REMOVED = "listeners_removed"
    NEW_EXECUTABLES = "new_executables"
    TOP_PROCESS_CPU_PERCENT = "top_process_cpu_percent"


RATE_FEATURES = frozenset(f for f in Feature if f.value.endswith("_per_s"))


@dataclass(frozen=True, slots=True, order=True)
class Destination:
    address: str
    port: int


@dataclass(frozen=True, slots=True, order=True)
class Listener:
    proto: str
    port: int


@dataclass(frozen=True, slots=True)
class Executable:
    path: str
    sha256: str | None

    @property
    def key(self) -> str:
        """What identifies the binary: its hash, else (unhashed) its path."""
        return self.sha256 or self.path


@dataclass(frozen=True, slots=True)
class FeatureVector:
    """The features of one report, and the things behind the ones that name things."""

    collected_at_ms: int
    values: Mapping[Feature, float]  # a rate is absent on a new baseline
    new_baseline: NewBaseline | None
    destinations: tuple[Destination, ...]  # outbound, distinct (over the period if sampled)
    listeners: tuple[Listener, ...]  # at the report, and any opened during the period
    new_destinations: tuple[Destination, ...]  # outbound, to an address never reached
    new_remote_ports: tuple[int, ...]
    listeners_added: tuple[Listener, ...]  # versus the previous report
    listeners_removed: tuple[Listener, ...]
    first_listeners: tuple[Listener, ...]  # on a port this device never listened on
    executables: tuple[Executable, ...]  # reported as newly running
    first_executables: tuple[Executable, ...]  # never seen on this device

    def get(self, feature: Feature) -> float | None:
        return self.values.get(feature)


# Known sets: insertion-ordered dicts used as bounded sets, never mutated once in a state
# (a report copies one only when it adds to it, so an unchanged device costs no copy).
_Item = TypeVar("_Item", bound=Hashable)


@dataclass(frozen=True, slots=True)
class DeviceFeatureState:
    """What the next report of the device needs; bounded (see the module doc)."""

    boot_id: str
    seq: int
    collected_at_ms: int
    counters: Mapping[Feature, int]
    interfaces: Mapping[str, tuple[int, int, int, int]]  # bytes in/out, packets in/out
    listeners: frozenset[Listener]
    known_addresses: Mapping[str, None]  # outbound
    known_ports: Mapping[int, None]
    known_listeners: Mapping[Listener, None]
    known_executables: Mapping[str, None]  # Executable.key


def _empty_state() -> DeviceFeatureState:
    return DeviceFeatureState(
        boot_id="", seq=-1, collected_at_ms=0, counters=MappingProxyType({}),
        interfaces=MappingProxyType({}), listeners=frozenset(),
        known_addresses=MappingProxyType({}), known_ports=MappingProxyType({}),
        known_listeners=MappingProxyType({}), known_executables=MappingProxyType({}))


_INTERFACE_FEATURES = (Feature.BYTES_IN_PER_S, Feature.BYTES_OUT_PER_S,
                       Feature.PACKETS_IN_PER_S, Feature.PACKETS_OUT_PER_S)


def _net_counters(report: TelemetryReport) -> dict[Feature, int]:
    net = report.net
    if net is None:
        return {}
    return {
        Feature.TCP_ATTEMPTS_PER_S: net.tcp_active_opens,
        Feature.TCP_FAILURES_PER_S: net.tcp_attempt_fails,
        Feature.TCP_INBOUND_PER_S: net.tcp_passive_opens,
        Feature.TCP_RESETS_PER_S: net.tcp_estab_resets + net.tcp_out_resets,
        Feature.TCP_RETRANSMITS_PER_S: net.tcp_retrans_segs,
        Feature.UDP_IN_PER_S: net.udp_in_datagrams,
        Feature.UDP_OUT_PER_S: net.udp_out_datagrams,
        Feature.UDP_NO_PORT_PER_S: net.udp_no_ports,
    }


def _interfaces(report: TelemetryReport) -> dict[str, tuple[int, int, int, int]]:
    return {
        i.name: (i.bytes_in, i.bytes_out, i.packets_in, i.packets_out)
        for i in report.interfaces if i.name != LOOPBACK
    }


def _interface_rates(
    previous: Mapping[str, tuple[int, int, int, int]],
    current: Mapping[str, tuple[int, int, int, int]],
    seconds: float,
) -> dict[Feature, float]:
    rates = interface_rates(previous, current, seconds, width=len(_INTERFACE_FEATURES))
    return {f: rate for f, rate in zip(_INTERFACE_FEATURES, rates, strict=True)
            if rate is not None}


def _remember(
    known: Mapping[_Item, None], items: Iterable[_Item]
) -> tuple[Mapping[_Item, None], list[_Item]]:
    """``known`` with ``items`` added (the oldest evicted past the cap), and the new ones."""
    fresh = list(dict.fromkeys(item for item in items if item not in known))
    if not fresh:
        return known, fresh
    grown = dict(known)
    for item in fresh:
        grown[item] = None
    for oldest in list(grown)[: max(len(grown) - KNOWN_CAP, 0)]:
        del grown[oldest]
    return MappingProxyType(grown), fresh


@dataclass(frozen=True, slots=True)
class _Sockets:
    destinations: tuple[Destination, ...]
    addresses: tuple[str, ...]  # every connection's
    outbound_addresses: tuple[str, ...]
    outbound_ports: tuple[int, ...]
    listeners: frozenset[Listener]  # at the report: the reference for the next one
    period_listeners: frozenset[Listener]  # and those opened (and maybe closed) in the period


def _sockets(report: TelemetryReport) -> _Sockets:
    listeners = frozenset(Listener(s.proto.value, s.port) for s in report.listening)
    opened = frozenset(Listener(s.proto.value, s.port) for s in report.listeners_opened or ())
    # A connection whose local port listens (same transport) came in: its remote port is
    # the client's, not a service this device reaches. (The agent's sampler tells the
    # direction itself: what it saw over the period is outbound.)
    inbound_ports = {(s.proto, s.port) for s in report.listening}
    outbound = {
        Destination(c.remote_address, c.remote_port) for c in report.connections
        if (c.proto, c.local_port) not in inbound_ports
    }
    seen = [Destination(d.address, d.port) for d in report.destinations_seen or ()]
    destinations = sorted(outbound.union(seen))
    addresses = tuple(dict.fromkeys([*(c.remote_address for c in report.connections),
                                     *(d.address for d in seen)]))
    ports = tuple(dict.fromkeys(d.port for d in destinations))
    outbound_addresses = tuple(dict.fromkeys(d.address for d in destinations))
    return _Sockets(tuple(destinations), addresses, outbound_addresses, ports, listeners,
                    listeners | opened)


def _top_process_cpu_percent(report: TelemetryReport) -> float | None:
    """The busiest process's CPU over the report's period, in percent of one core."""
    period_s = (report.collected_at_ms - report.period_start_ms) / 1000
    if not report.processes or period_s <= 0:
        return None
    return max(p.cpu_seconds for p in report.processes) / period_s * 100


def _gauges(report: TelemetryReport, sockets: _Sockets) -> dict[Feature, float]:
    values = {
        Feature.CPU_PERCENT: report.cpu_percent,
        Feature.PROCESS_COUNT: float(report.process_count),
        Feature.CONNECTIONS: float(len(report.connections) + report.connections_omitted),
        Feature.REMOTE_ADDRESSES: float(len(sockets.addresses)),
        Feature.REMOTE_PORTS: float(len(sockets.outbound_ports)),
        Feature.NEW_EXECUTABLES: float(
            len(report.new_executables) + report.new_executables_pending),
    }
    if report.auth_failures is not None:
        values[Feature.AUTH_FAILURES] = float(report.auth_failures)
    top_cpu = _top_process_cpu_percent(report)
    if top_cpu is not None:
        values[Feature.TOP_PROCESS_CPU_PERCENT] = top_cpu
    return values


@dataclass(frozen=True, slots=True)
class _Learned:
    """The device's known sets after a report, and what the report added to them."""

    addresses: Mapping[str, None]
    ports: Mapping[int, None]
    listeners: Mapping[Listener, None]
    executables: Mapping[str, None]
    new_addresses: frozenset[str]
    new_ports: tuple[int, ...]
    first_listeners: tuple[Listener, ...]
    first_executables: frozenset[str]


def _learn(
    before: DeviceFeatureState, sockets: _Sockets, executables: tuple[Executable, ...],
    first_report: bool,
) -> _Learned:
    addresses, new_addresses = _remember(before.known_addresses, sockets.outbound_addresses)
    ports, new_ports = _remember(before.known_ports, sockets.outbound_ports)
    listeners, first_listeners = _remember(before.known_listeners,
                                           sorted(sockets.period_listeners))
    binaries, first_binaries = _remember(before.known_executables, (e.key for e in executables))
    if first_report:
        # Nothing is new against no history: the first report is learned, not flagged.
        new_addresses, new_ports, first_listeners, first_binaries = [], [], [], []
    return _Learned(addresses, ports, listeners, binaries, frozenset(new_addresses),
                    tuple(sorted(new_ports)), tuple(first_listeners), frozenset(first_binaries))


def _next_state(
    state: DeviceFeatureState | None, report: TelemetryReport, late: bool,
    counters: dict[Feature, int], interfaces: dict[str, tuple[int, int, int, int]],
    sockets: _Sockets, learned: _Learned,
) -> DeviceFeatureState:
    if late and state is not None:
        # A late report is learned from, but the newer one stays the reference for rates.
        return replace(state, known_addresses=learned.addresses, known_ports=learned.ports,
                       known_listeners=learned.listeners,
                       known_executables=learned.executables)
    return DeviceFeatureState(
        boot_id=report.boot_id, seq=report.seq, collected_at_ms=report.collected_at_ms,
        counters=MappingProxyType(counters), interfaces=MappingProxyType(interfaces),
        listeners=sockets.listeners, known_addresses=learned.addresses,
        known_ports=learned.ports, known_listeners=learned.listeners,
        known_executables=learned.executables)


def extract_features(
    state: DeviceFeatureState | None, report: TelemetryReport
) -> tuple[FeatureVector, DeviceFeatureState]:
    """The features of ``report`` given the device's ``state`` (None before its first)."""
    sockets = _sockets(report)
    values = _gauges(report, sockets)
    counters = _net_counters(report)
    interfaces = _interfaces(report)
    baseline = new_baseline(state, report)
    if state is not None and baseline is None:
        seconds = (report.collected_at_ms - state.collected_at_ms) / 1000
        values |= counter_rates(state.counters, counters, seconds)
        values |= _interface_rates(state.interfaces, interfaces, seconds)

    before = state if state is not None else _empty_state()
    executables = tuple(Executable(e.path, e.sha256) for e in report.new_executables)
    learned = _learn(before, sockets, executables, first_report=state is None)
    late = baseline is NewBaseline.LATE
    added: tuple[Listener, ...] = ()
    removed: tuple[Listener, ...] = ()
    if state is not None:
        values[Feature.NEW_REMOTE_ADDRESSES] = float(len(learned.new_addresses))
        values[Feature.NEW_REMOTE_PORTS] = float(len(learned.new_ports))
    if state is not None and not late:  # changes against the previous report, not an older one
        added = tuple(sorted(sockets.period_listeners - before.listeners))
        removed = tuple(sorted(before.listeners - sockets.listeners))
        values[Feature.LISTENERS_ADDED] = float(len(added))
        values[Feature.LISTENERS_REMOVED] = float(len(removed))

    vector = FeatureVector(
        collected_at_ms=report.collected_at_ms,
        values=MappingProxyType(values),
        new_baseline=baseline,
        destinations=sockets.destinations,
        listeners=tuple(sorted(sockets.period_listeners)),
        new_destinations=tuple(
            d for d in sockets.destinations if d.address in learned.new_addresses),
        new_remote_ports=learned.new_ports,
        listeners_added=added,
        listeners_removed=removed,
        first_listeners=learned.first_listeners,
        executables=executables,
        first_executables=tuple(
            e for e in executables if e.key in learned.first_executables),
    )
    return vector, _next_state(state, report, late, counters, interfaces, sockets, learned)


__all__ = [
    "KNOWN_CAP",
    "RATE_FEATURES",
    "Destination",
    "DeviceFeatureState",
    "Executable",
    "Feature",
    "FeatureVector",
    "Listener",
    "NewBaseline",
    "extract_features",
]
