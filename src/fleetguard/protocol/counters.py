"""Since-boot counters as per-second rates: the one rule, for whoever reads reports. Pure.

A report's counters (interface traffic, the kernel's TCP and UDP counters) are cumulative
since boot. Two readings of the same boot give a rate: the difference over the gap between
them, in seconds of the device's clock (``collected_at_ms``). That gap, not
``period_start_ms``, is what the difference covers, also when a report in between was lost.

The previous reading is the *reference*. A report is a **new baseline** (no rates: not
zero, not a spike) when (:func:`new_baseline`):

* it is the device's first (no reference),
* it is not after the reference in sequence (``seq`` not above: late, or a duplicate);
  the reference stays as it was, the newer reading (:func:`next_reference`),
* it comes from another boot (``boot_id``): a reboot,
* it was collected no later than the reference (a clock set back).

Otherwise every counter gives its rate, except one that went down (a reset or a wrap):
that counter alone has none (:func:`counter_rates`). Interface counters are summed over
every interface but loopback; an interface that was not in the reference counts from the
next report (its since-boot total is no rate); if a counter went down on any interface,
the sum has no rate for that counter (:func:`interface_rates`).

>>> a = CounterReading("b", 1, 10_000, {"x": 100}, {"eth0": (1_000,)})
>>> b = CounterReading("b", 2, 20_000, {"x": 150}, {"eth0": (6_000,)})
>>> new_baseline(a, b) is None, counter_rates(a.counters, b.counters, 10.0)
(True, {'x': 5.0})
>>> interface_rates(a.interfaces, b.interfaces, 10.0, width=1)
[500.0]
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from enum import StrEnum
from operator import add, sub
from typing import NamedTuple, Protocol, TypeVar

LOOPBACK = "lo"

_Key = TypeVar("_Key")


class NewBaseline(StrEnum):
    """Why a report has no rates (wire values are stable)."""

    FIRST_REPORT = "first_report"
    REBOOT = "reboot"
    NO_PERIOD = "no_period"  # not later than the reference (a clock set back)
    LATE = "late"  # not after the reference in sequence: late or a duplicate


class Counter(StrEnum):
    """The since-boot counters of a report, by stable name (see :func:`reading_of`)."""

    # Summed over the interfaces but loopback (InterfaceCounters), in INTERFACE_COUNTERS order.
    BYTES_IN = "bytes_in"
    BYTES_OUT = "bytes_out"
    PACKETS_IN = "packets_in"
    PACKETS_OUT = "packets_out"
    ERRORS_IN = "errors_in"
    ERRORS_OUT = "errors_out"
    DROPS_IN = "drops_in"
    DROPS_OUT = "drops_out"
    # The kernel's (NetworkCounters), absent when a report has no ``net``.
    TCP_ATTEMPTS = "tcp_attempts"  # tcp_active_opens: outbound connection attempts
    TCP_ATTEMPT_FAILS = "tcp_attempt_fails"
    TCP_INBOUND = "tcp_inbound"  # tcp_passive_opens: connections accepted
    TCP_RESETS = "tcp_resets"  # tcp_estab_resets + tcp_out_resets
    TCP_RETRANSMITS = "tcp_retransmits"  # tcp_retrans_segs
    TCP_IN_ERRORS = "tcp_in_errors"
    UDP_IN = "udp_in"  # udp_in_datagrams
    UDP_OUT = "udp_out"  # udp_out_datagrams
    UDP_NO_PORT = "udp_no_port"  # udp_no_ports: datagrams to a port nobody listens on
    UDP_IN_ERRORS = "udp_in_errors"


INTERFACE_COUNTERS: tuple[Counter, ...] = (
    Counter.BYTES_IN, Counter.BYTES_OUT, Counter.PACKETS_IN, Counter.PACKETS_OUT,
    Counter.ERRORS_IN, Counter.ERRORS_OUT, Counter.DROPS_IN, Counter.DROPS_OUT,
)
NET_COUNTERS: tuple[Counter, ...] = tuple(c for c in Counter if c not in INTERFACE_COUNTERS)
_INTERFACE_KEYS: tuple[str, ...] = tuple(c.value for c in INTERFACE_COUNTERS)


class CounterReading(NamedTuple):
    """One report's since-boot counters, and which report they come from (a tuple: cheap
    to make, for one is made of every report ingested).

    ``counters``: machine-wide counters by any key (:class:`Counter` from
    :func:`reading_of`). ``interfaces``: per interface but loopback, a tuple of counters in
    the same positions in every reading (INTERFACE_COUNTERS from :func:`reading_of`).
    """

    boot_id: str
    seq: int
    collected_at_ms: int
    counters: Mapping[str, int]
    interfaces: Mapping[str, Sequence[int]]


class ReportPosition(Protocol):
    """Where a report stands in a device's sequence: what decides whether it has rates."""

    @property
    def boot_id(self) -> str: ...
    @property
    def seq(self) -> int: ...
    @property
    def collected_at_ms(self) -> int: ...


def new_baseline(
    reference: ReportPosition | None, current: ReportPosition
) -> NewBaseline | None:
    """Why ``current`` has no rates against ``reference`` (None: it has them)."""
    if reference is None:
        return NewBaseline.FIRST_REPORT
    if current.seq <= reference.seq:
        return NewBaseline.LATE
    if current.boot_id != reference.boot_id:
        return NewBaseline.REBOOT
    if current.collected_at_ms <= reference.collected_at_ms:
        return NewBaseline.NO_PERIOD
    return None


def next_reference(
    reference: CounterReading | None, current: CounterReading
) -> CounterReading:
    """The reference for the report after ``current``: ``current``, unless it is late."""
    if reference is not None and new_baseline(reference, current) is NewBaseline.LATE:
        return reference
    return current


def gap_seconds(reference: CounterReading, current: CounterReading) -> float:
    """What the differences of ``current`` against ``reference`` cover, in seconds."""
    return (current.collected_at_ms - reference.collected_at_ms) / 1000


def counter_rates(
    previous: Mapping[_Key, int], current: Mapping[_Key, int], seconds: float
) -> dict[_Key, float]:
    """Per-second rate of each counter in both readings that did not go down.

    Call only when :func:`new_baseline` says there are rates (``seconds`` > 0).
    """
    return {
        key: (value - previous[key]) / seconds
        for key, value in current.items()
        if key in previous and value >= previous[key]
    }


def interface_rates(
    previous: Mapping[str, Sequence[int]], current: Mapping[str, Sequence[int]],
    seconds: float, width: int = len(INTERFACE_COUNTERS),
) -> list[float | None]:
    """Per-second rate of each of the ``width`` counter positions, summed over the
    interfaces in both readings (None: it went down on one of them; 0.0 when no interface
    is in both). Loopback must already be left out."""
    sums: list[int] | None = None
    went_down: set[int] = set()
    for name, values in current.items():
        before = previous.get(name)
        if before is None:
            continue  # appeared since the reference: it counts from the next report
        if len(values) != len(before):
            raise ValueError(f"interface {name}: {len(values)} counters, {len(before)} before")
        diffs = list(map(sub, values, before))
        if min(diffs, default=0) < 0:
            went_down.update(i for i, d in enumerate(diffs) if d < 0)
        sums = diffs if sums is None else list(map(add, sums, diffs))
    if sums is None:
        return [0.0] * width
    return [None if i in went_down else total / seconds for i, total in enumerate(sums)]


def rates(
    reference: CounterReading | None, current: CounterReading
) -> tuple[NewBaseline | None, dict[str, float]]:
    """Every rate of ``current``: machine-wide counters by their key, interface sums by
    INTERFACE_COUNTERS; and why there are none, on a new baseline."""
    baseline = new_baseline(reference, current)
    if reference is None or baseline is not None:
        return baseline, {}
    seconds = gap_seconds(reference, current)
    out = counter_rates(reference.counters, current.counters, seconds)
    summed = interface_rates(reference.interfaces, current.interfaces, seconds)
    for key, rate in zip(_INTERFACE_KEYS, summed, strict=True):
        if rate is not None:
            out[key] = rate
    return None, out


# -- reading a report -------------------------------------------------------------------


class _Interface(Protocol):
    @property
    def name(self) -> str: ...
    @property
    def bytes_in(self) -> int: ...
    @property
    def bytes_out(self) -> int: ...
    @property
    def packets_in(self) -> int: ...
    @property
    def packets_out(self) -> int: ...
    @property
    def errors_in(self) -> int: ...
    @property
    def errors_out(self) -> int: ...
    @property
    def drops_in(self) -> int: ...
    @property
    def drops_out(self) -> int: ...


class _Net(Protocol):
    @property
    def tcp_active_opens(self) -> int: ...
    @property
    def tcp_passive_opens(self) -> int: ...
    @property
    def tcp_attempt_fails(self) -> int: ...
    @property
    def tcp_estab_resets(self) -> int: ...
    @property
    def tcp_out_resets(self) -> int: ...
    @property
    def tcp_retrans_segs(self) -> int: ...
    @property
    def tcp_in_errors(self) -> int: ...
    @property
    def udp_in_datagrams(self) -> int: ...
    @property
    def udp_out_datagrams(self) -> int: ...
    @property
    def udp_no_ports(self) -> int: ...
    @property
    def udp_in_errors(self) -> int: ...


class CounterSource(Protocol):
    """What a reading is taken from: a :class:`~fleetguard.protocol.TelemetryReport`."""

    @property
    def seq(self) -> int: ...
    @property
    def boot_id(self) -> str: ...
    @property
    def collected_at_ms(self) -> int: ...
    @property
    def interfaces(self) -> Sequence[_Interface]: ...
    @property
    def net(self) -> _Net | None: ...


def net_counters(net: _Net | None) -> dict[str, int]:
    """A report's machine-wide counters by :class:`Counter` value (none without ``net``)."""
    if net is None:
        return {}
    return {
        "tcp_attempts": net.tcp_active_opens,
        "tcp_attempt_fails": net.tcp_attempt_fails,
        "tcp_inbound": net.tcp_passive_opens,
        "tcp_resets": net.tcp_estab_resets + net.tcp_out_resets,
        "tcp_retransmits": net.tcp_retrans_segs,
        "tcp_in_errors": net.tcp_in_errors,
        "udp_in": net.udp_in_datagrams,
        "udp_out": net.udp_out_datagrams,
        "udp_no_port": net.udp_no_ports,
        "udp_in_errors": net.udp_in_errors,
    }


def interface_counters(interfaces: Sequence[_Interface]) -> dict[str, tuple[int, ...]]:
    """Each interface's counters but loopback's, in INTERFACE_COUNTERS order."""
    return {
        i.name: (i.bytes_in, i.bytes_out, i.packets_in, i.packets_out,
                 i.errors_in, i.errors_out, i.drops_in, i.drops_out)
        for i in interfaces if i.name != LOOPBACK
    }


def reading_of(report: CounterSource) -> CounterReading:
    """The counters of a report as :func:`rates` takes them."""
    return CounterReading(
        boot_id=report.boot_id, seq=report.seq, collected_at_ms=report.collected_at_ms,
        counters=net_counters(report.net), interfaces=interface_counters(report.interfaces),
    )


__all__ = [
    "INTERFACE_COUNTERS",
    "LOOPBACK",
    "NET_COUNTERS",
    "Counter",
    "CounterReading",
    "CounterSource",
    "NewBaseline",
    "ReportPosition",
    "counter_rates",
    "gap_seconds",
    "interface_counters",
    "interface_rates",
    "net_counters",
    "new_baseline",
    "next_reference",
    "rates",
    "reading_of",
]
