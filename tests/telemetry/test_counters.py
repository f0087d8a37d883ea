"""The counter-to-rate rule (protocol.counters): one rule, the same as detection's features."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from fleetguard.detect.features import DeviceFeatureState, Feature, extract_features
from fleetguard.protocol import InterfaceCounters, NetworkCounters, TelemetryReport
from fleetguard.protocol.counters import (
    Counter,
    CounterReading,
    NewBaseline,
    interface_rates,
    new_baseline,
    next_reference,
    rates,
    reading_of,
)
from tests.protocol import samples

BOOT = "3f0e5a8c-2b1d-4e6f-9a7b-0c1d2e3f4a5b"
REBOOTED = "9a9e5a8c-2b1d-4e6f-9a7b-0c1d2e3f4a5b"


def _reading(seq: int, at_ms: int, *, boot: str = BOOT, x: int = 0,
             interfaces: dict[str, tuple[int, ...]] | None = None) -> CounterReading:
    return CounterReading(boot, seq, at_ms, {"x": x}, interfaces or {})


def test_rates_are_differences_over_the_gap_between_the_two_readings() -> None:
    before = _reading(1, 10_000, x=100, interfaces={"eth0": (1_000, 10, 0, 0, 0, 0, 0, 0)})
    after = _reading(2, 30_000, x=300, interfaces={"eth0": (5_000, 50, 0, 0, 0, 0, 0, 4)})
    assert interface_rates(before.interfaces, after.interfaces, 20.0) == [
        200.0, 2.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.2]
    baseline, found = rates(before, after)
    assert baseline is None and found["x"] == 10.0
    assert found["bytes_in"] == 200.0 and found["drops_out"] == 0.2


def test_each_new_baseline_gives_no_rate_and_says_why() -> None:
    reference = _reading(5, 50_000, x=100)
    cases = {
        NewBaseline.FIRST_REPORT: (None, _reading(6, 60_000, x=200)),
        NewBaseline.LATE: (reference, _reading(4, 60_000, x=200)),
        NewBaseline.REBOOT: (reference, _reading(6, 60_000, boot=REBOOTED, x=200)),
        NewBaseline.NO_PERIOD: (reference, _reading(6, 50_000, x=200)),
    }
    for why, (before, after) in cases.items():
        assert rates(before, after) == (why, {}), why


def test_a_duplicate_seq_is_late() -> None:
    assert new_baseline(_reading(5, 1_000), _reading(5, 2_000)) is NewBaseline.LATE


def test_a_late_report_leaves_the_newer_one_the_reference() -> None:
    newest = _reading(5, 50_000, x=500)
    late = _reading(4, 40_000, x=400)
    assert next_reference(newest, late) is newest
    clock_back = _reading(6, 10_000, x=600)
    assert next_reference(newest, clock_back) is clock_back  # a baseline the next measures from
    assert next_reference(None, late) is late


def test_a_counter_that_went_down_has_no_rate_alone() -> None:
    before = CounterReading(BOOT, 1, 0, {"up": 10, "reset": 500}, {})
    after = CounterReading(BOOT, 2, 10_000, {"up": 30, "reset": 3}, {})
    assert rates(before, after)[1] == {"up": 2.0, **dict.fromkeys(_interface_values(), 0.0)}


def test_an_interface_that_appeared_counts_from_the_next_report() -> None:
    before = {"eth0": (100, 0)}
    after = {"eth0": (200, 0), "wwan0": (10**9, 0)}
    assert interface_rates(before, after, 10.0, width=2) == [10.0, 0.0]


def test_an_interface_counter_that_went_down_takes_the_sum_of_that_counter_down() -> None:
    before = {"eth0": (100, 5), "wlan0": (900, 5)}
    after = {"eth0": (200, 6), "wlan0": (10, 7)}
    assert interface_rates(before, after, 1.0, width=2) == [None, 3.0]


def test_a_reading_names_every_counter_of_a_report_and_leaves_loopback_out() -> None:
    reading = reading_of(samples.telemetry())
    assert set(reading.counters) == {c.value for c in Counter} - set(_interface_values())
    assert reading.counters["tcp_resets"] == 1 + 4  # established resets and resets sent
    assert set(reading.interfaces) == {"eth0"}
    without_net = reading_of(samples.telemetry(net=None))
    assert without_net.counters == {}


def _interface_values() -> list[str]:
    return ["bytes_in", "bytes_out", "packets_in", "packets_out", "errors_in", "errors_out",
            "drops_in", "drops_out"]


# -- the same rule as detection's features ------------------------------------------------

_DETECT = {
    Feature.BYTES_IN_PER_S: "bytes_in", Feature.BYTES_OUT_PER_S: "bytes_out",
    Feature.PACKETS_IN_PER_S: "packets_in", Feature.PACKETS_OUT_PER_S: "packets_out",
    Feature.TCP_ATTEMPTS_PER_S: "tcp_attempts", Feature.TCP_FAILURES_PER_S: "tcp_attempt_fails",
    Feature.TCP_INBOUND_PER_S: "tcp_inbound", Feature.TCP_RESETS_PER_S: "tcp_resets",
    Feature.TCP_RETRANSMITS_PER_S: "tcp_retransmits", Feature.UDP_IN_PER_S: "udp_in",
    Feature.UDP_OUT_PER_S: "udp_out", Feature.UDP_NO_PORT_PER_S: "udp_no_port",
}


@st.composite
def _reports(draw: st.DrawFn) -> list[TelemetryReport]:
    out: list[TelemetryReport] = []
    seq, at, total = 10, samples.T0, 1_000
    for _ in range(draw(st.integers(2, 8))):
        seq += draw(st.sampled_from([1, 1, 1, 2, 0, -1, -3]))
        at += draw(st.sampled_from([60_000, 60_000, 5_000, 0, -30_000]))
        total += draw(st.sampled_from([500, 500, 0, -900]))
        names = draw(st.sampled_from([("eth0",), ("eth0", "wlan0"), ("wlan0",), ()]))
        interfaces = [InterfaceCounters(name=n, bytes_in=max(total, 0) + i, bytes_out=2 * max(total, 0),
                                        packets_in=max(total, 0) // 10, packets_out=7)
                      for i, n in enumerate(names)]
        interfaces.append(InterfaceCounters(name="lo", bytes_in=10**12, bytes_out=1, packets_in=1,
                                            packets_out=1))
        net = None if draw(st.integers(0, 9)) == 0 else NetworkCounters(
            tcp_active_opens=max(total, 0), tcp_passive_opens=3, tcp_attempt_fails=max(total // 3, 0),
            tcp_estab_resets=1, tcp_out_resets=max(total // 7, 0), tcp_retrans_segs=9, tcp_in_errors=0,
            udp_in_datagrams=max(total, 0), udp_out_datagrams=90, udp_no_ports=1, udp_in_errors=0)
        boot = draw(st.sampled_from([BOOT, BOOT, BOOT, REBOOTED]))
        out.append(samples.telemetry(seq=max(seq, 0), collected_at_ms=max(at, 0),
                                     period_start_ms=max(at - 60_000, 0), boot_id=boot,
                                     interfaces=interfaces, net=net))
    return out


@settings(max_examples=300, deadline=None)
@given(_reports())
def test_the_rule_gives_what_detections_features_give(reports: list[TelemetryReport]) -> None:
    state: DeviceFeatureState | None = None
    reference: CounterReading | None = None
    for report in reports:
        vector, state = extract_features(state, report)
        reading = reading_of(report)
        baseline, found = rates(reference, reading)
        reference = next_reference(reference, reading)
        assert (baseline.value if baseline else None) == (
            vector.new_baseline.value if vector.new_baseline else None)
        theirs = {name: vector.values[f] for f, name in _DETECT.items() if f in vector.values}
        ours = {name: found[name] for name in _DETECT.values() if name in found}
        assert ours == theirs
