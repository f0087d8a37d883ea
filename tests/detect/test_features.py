"""Per-report features: counters become rates, a new baseline is no spike, and what is new
is named."""

from __future__ import annotations

import pytest

from fleetguard.detect import (
    KNOWN_CAP,
    RATE_FEATURES,
    Destination,
    Executable,
    Feature,
    Listener,
    NewBaseline,
    extract_features,
)

from .support import (
    MINUTE_MS,
    OTHER_BOOT,
    T0,
    TCP,
    Connection,
    eth,
    executable,
    features_of,
    listening,
    net,
    outbound,
    report,
)


def test_bytes_and_packets_become_per_second_rates_over_the_gap_between_reports() -> None:
    _, second = features_of([
        report(T0, interfaces=[eth(1_000, 5_000, 10, 50)]),
        report(T0 + MINUTE_MS, interfaces=[eth(7_000, 125_000, 70, 650)]),
    ])
    assert second.get(Feature.BYTES_IN_PER_S) == pytest.approx(100.0)
    assert second.get(Feature.BYTES_OUT_PER_S) == pytest.approx(2_000.0)
    assert second.get(Feature.PACKETS_IN_PER_S) == pytest.approx(1.0)
    assert second.get(Feature.PACKETS_OUT_PER_S) == pytest.approx(10.0)


def test_a_lost_report_in_between_does_not_inflate_the_rate() -> None:
    _, after_gap = features_of([
        report(T0, interfaces=[eth(bytes_out=0)]),
        report(T0 + 3 * MINUTE_MS, interfaces=[eth(bytes_out=180_000)]),  # period says 1 min
    ])
    assert after_gap.get(Feature.BYTES_OUT_PER_S) == pytest.approx(1_000.0)


def test_loopback_traffic_is_not_the_device_talking_to_the_network() -> None:
    _, second = features_of([
        report(T0, interfaces=[eth(bytes_out=0), eth(bytes_out=0, name="lo")]),
        report(T0 + MINUTE_MS,
               interfaces=[eth(bytes_out=6_000), eth(bytes_out=60_000_000, name="lo")]),
    ])
    assert second.get(Feature.BYTES_OUT_PER_S) == pytest.approx(100.0)


def test_an_interface_that_appears_counts_from_its_next_report_not_as_a_spike() -> None:
    _, appeared, next_one = features_of([
        report(T0, interfaces=[eth(bytes_out=0)]),
        report(T0 + MINUTE_MS, interfaces=[eth(bytes_out=6_000),
                                           eth(bytes_out=900_000_000, name="wlan0")]),
        report(T0 + 2 * MINUTE_MS, interfaces=[eth(bytes_out=12_000),
                                               eth(bytes_out=900_006_000, name="wlan0")]),
    ])
    assert appeared.get(Feature.BYTES_OUT_PER_S) == pytest.approx(100.0)
    assert next_one.get(Feature.BYTES_OUT_PER_S) == pytest.approx(200.0)


def test_kernel_counters_become_connection_and_datagram_rates() -> None:
    _, second = features_of([
        report(T0, counters=net()),
        report(T0 + MINUTE_MS, counters=net(
            tcp_active_opens=600, tcp_attempt_fails=540, tcp_passive_opens=60,
            tcp_estab_resets=6, tcp_out_resets=54, tcp_retrans_segs=120,
            udp_in_datagrams=1_200, udp_out_datagrams=2_400, udp_no_ports=30)),
    ])
    assert {f: second.get(f) for f in RATE_FEATURES if f.value.startswith(("tcp", "udp"))} == {
        Feature.TCP_ATTEMPTS_PER_S: 10.0, Feature.TCP_FAILURES_PER_S: 9.0,
        Feature.TCP_INBOUND_PER_S: 1.0, Feature.TCP_RESETS_PER_S: 1.0,
        Feature.TCP_RETRANSMITS_PER_S: 2.0, Feature.UDP_IN_PER_S: 20.0,
        Feature.UDP_OUT_PER_S: 40.0, Feature.UDP_NO_PORT_PER_S: 0.5,
    }


def test_the_first_report_of_a_device_is_a_baseline_with_gauges_but_no_rates() -> None:
    (first,) = features_of([report(T0, cpu=42.0, interfaces=[eth(10**12, 10**12, 10**9, 10**9)],
                                   counters=net(tcp_active_opens=10**9))])
    assert first.new_baseline is NewBaseline.FIRST_REPORT
    assert RATE_FEATURES.isdisjoint(first.values)
    assert first.get(Feature.CPU_PERCENT) == 42.0
    assert first.get(Feature.PROCESS_COUNT) == 40.0


def test_nothing_is_new_on_the_first_report_it_is_what_the_device_is_learned_from() -> None:
    (first,) = features_of([report(T0, listeners=[listening(22)],
                                   connections=[outbound("203.0.113.5", 443)],
                                   executables=[executable("/usr/bin/app")])])
    novelty = {Feature.NEW_REMOTE_ADDRESSES, Feature.NEW_REMOTE_PORTS,
               Feature.LISTENERS_ADDED, Feature.LISTENERS_REMOVED}
    assert novelty.isdisjoint(first.values)
    assert (first.new_destinations, first.first_listeners, first.first_executables) == (
        (), (), ())
    assert first.get(Feature.REMOTE_ADDRESSES) == 1.0  # the gauges are there


def test_a_reboot_is_a_new_baseline_not_a_drop_to_zero_or_a_spike() -> None:
    _, rebooted, after = features_of([
        report(T0, interfaces=[eth(bytes_out=10**9)], counters=net(tcp_active_opens=5_000)),
        report(T0 + MINUTE_MS, boot_id=OTHER_BOOT, interfaces=[eth(bytes_out=1_000)],
               counters=net(tcp_active_opens=3)),
        report(T0 + 2 * MINUTE_MS, boot_id=OTHER_BOOT, interfaces=[eth(bytes_out=7_000)],
               counters=net(tcp_active_opens=9)),
    ])
    assert rebooted.new_baseline is NewBaseline.REBOOT
    assert RATE_FEATURES.isdisjoint(rebooted.values)
    assert after.new_baseline is None
    assert after.get(Feature.BYTES_OUT_PER_S) == pytest.approx(100.0)
    assert after.get(Feature.TCP_ATTEMPTS_PER_S) == pytest.approx(0.1)


def test_a_counter_that_went_down_has_no_rate_and_the_others_keep_theirs() -> None:
    _, second = features_of([
        report(T0, counters=net(tcp_active_opens=1_000, udp_out_datagrams=100)),
        report(T0 + MINUTE_MS, counters=net(tcp_active_opens=10, udp_out_datagrams=160)),
    ])
    assert second.get(Feature.TCP_ATTEMPTS_PER_S) is None
    assert second.get(Feature.UDP_OUT_PER_S) == pytest.approx(1.0)


def test_a_clock_set_back_is_a_new_baseline_and_the_reference_for_the_next_rate() -> None:
    _, set_back, after = features_of([
        report(T0, seq=1, interfaces=[eth(bytes_out=0)]),
        report(T0 - 10 * MINUTE_MS, seq=2, interfaces=[eth(bytes_out=5_000)]),
        report(T0 - 9 * MINUTE_MS, seq=3, interfaces=[eth(bytes_out=11_000)]),
    ])
    assert set_back.new_baseline is NewBaseline.NO_PERIOD
    assert set_back.get(Feature.BYTES_OUT_PER_S) is None
    assert after.get(Feature.BYTES_OUT_PER_S) == pytest.approx(100.0)


def test_a_late_report_has_no_rates_and_the_newer_one_stays_the_reference() -> None:
    _, _, late, after = features_of([
        report(T0, seq=1, interfaces=[eth(bytes_out=0)]),
        report(T0 + 2 * MINUTE_MS, seq=3, interfaces=[eth(bytes_out=12_000)]),
        report(T0 + MINUTE_MS, seq=2, interfaces=[eth(bytes_out=6_000)]),
        report(T0 + 3 * MINUTE_MS, seq=4, interfaces=[eth(bytes_out=24_000)]),
    ])
    assert late.new_baseline is NewBaseline.LATE
    assert late.get(Feature.BYTES_OUT_PER_S) is None
    assert after.get(Feature.BYTES_OUT_PER_S) == pytest.approx(200.0)


def test_a_duplicate_report_is_late_and_changes_nothing_it_is_compared_with() -> None:
    first = report(T0, seq=1, listeners=[listening(22)])
    _, duplicate, after = features_of([
        first, first, report(T0 + MINUTE_MS, seq=2, listeners=[listening(22)])])
    assert duplicate.new_baseline is NewBaseline.LATE
    assert after.listeners_added == after.listeners_removed == ()


def test_a_late_report_still_names_what_is_new_in_it() -> None:
    _, _, late = features_of([
        report(T0, seq=1, connections=[outbound("203.0.113.5", 443)]),
        report(T0 + 2 * MINUTE_MS, seq=3, connections=[outbound("203.0.113.5", 443)]),
        report(T0 + MINUTE_MS, seq=2, connections=[outbound("198.51.100.66", 6667)]),
    ])
    assert late.new_destinations == (Destination("198.51.100.66", 6667),)


def test_auth_failures_are_absent_when_the_agent_has_no_source_for_them() -> None:
    with_source, without = features_of([report(T0, auth_failures=7),
                                        report(T0 + MINUTE_MS, auth_failures=None)])
    assert with_source.get(Feature.AUTH_FAILURES) == 7.0
    assert without.get(Feature.AUTH_FAILURES) is None


def test_connections_count_distinct_remote_addresses_and_outbound_ports() -> None:
    (vector,) = features_of([report(T0, listeners=[listening(1883)], connections=[
        outbound("203.0.113.5", 443), outbound("203.0.113.5", 8883),
        outbound("198.51.100.9", 443),
        # A client connected in to the broker: its remote port is ephemeral, not a service.
        Connection(proto=TCP, local_address="10.0.0.5", local_port=1883,
                   remote_address="10.0.0.77", remote_port=51234),
    ])])
    assert vector.get(Feature.CONNECTIONS) == 4.0
    assert vector.get(Feature.REMOTE_ADDRESSES) == 3.0
    assert vector.get(Feature.REMOTE_PORTS) == 2.0
    assert Destination("10.0.0.77", 51234) not in vector.destinations


def test_new_destinations_are_the_addresses_this_device_never_talked_to() -> None:
    _, second = features_of([
        report(T0, connections=[outbound("203.0.113.5", 443)]),
        report(T0 + MINUTE_MS, connections=[outbound("203.0.113.5", 443),
                                            outbound("198.51.100.66", 6667)]),
    ])
    assert second.get(Feature.NEW_REMOTE_ADDRESSES) == 1.0
    assert second.new_destinations == (Destination("198.51.100.66", 6667),)
    assert second.get(Feature.NEW_REMOTE_PORTS) == 1.0
    assert second.new_remote_ports == (6667,)


def test_a_new_client_connecting_in_is_not_a_new_destination_of_this_device() -> None:
    def client(address: str) -> Connection:
        return Connection(proto=TCP, local_address="10.0.0.5", local_port=1883,
                          remote_address=address, remote_port=50000)

    _, joined = features_of([
        report(T0, listeners=[listening(1883)], connections=[client("10.0.0.20")]),
        report(T0 + MINUTE_MS, listeners=[listening(1883)],
               connections=[client("10.0.0.20"), client("10.0.0.21")]),
    ])
    assert joined.new_destinations == ()
    assert joined.get(Feature.NEW_REMOTE_ADDRESSES) == 0.0
    assert joined.get(Feature.REMOTE_ADDRESSES) == 2.0


def test_a_destination_seen_long_ago_is_still_known() -> None:
    vectors = features_of([
        report(T0, connections=[outbound("203.0.113.5", 443)]),
        *(report(T0 + n * MINUTE_MS) for n in range(1, 50)),
        report(T0 + 50 * MINUTE_MS, connections=[outbound("203.0.113.5", 443)]),
    ])
    assert vectors[-1].new_destinations == ()


def test_listeners_added_and_removed_are_against_the_previous_report() -> None:
    _, second, third = features_of([
        report(T0, listeners=[listening(22), listening(80)]),
        report(T0 + MINUTE_MS, listeners=[listening(22), listening(4444)]),
        report(T0 + 2 * MINUTE_MS, listeners=[listening(22), listening(80)]),
    ])
    assert second.listeners_added == (Listener("tcp", 4444),)
    assert second.listeners_removed == (Listener("tcp", 80),)
    assert second.first_listeners == (Listener("tcp", 4444),)
    assert third.listeners_added == (Listener("tcp", 80),)
    assert third.first_listeners == ()  # port 80 listened before: back, not first


def test_an_executable_is_first_seen_once_per_device_by_its_hash() -> None:
    sha = "ab" * 32
    _, first, again, renamed = features_of([
        report(T0 - MINUTE_MS),
        report(T0, executables=[executable("/tmp/x", sha)]),
        report(T0 + MINUTE_MS, executables=[executable("/tmp/x", sha)]),
        report(T0 + 2 * MINUTE_MS, executables=[executable("/tmp/y", sha)]),
    ])
    assert first.get(Feature.NEW_EXECUTABLES) == 1.0
    assert first.first_executables == (Executable("/tmp/x", sha),)
    assert again.first_executables == ()
    assert renamed.first_executables == ()  # the same binary under another name


def test_the_known_sets_are_bounded_and_forget_the_oldest_first() -> None:
    def addresses(n: int, start: int = 0) -> list[Connection]:
        return [outbound(f"10.{(i >> 16) & 255}.{(i >> 8) & 255}.{i & 255}", 443)
                for i in range(start, start + n)]

    state = None
    for batch in range(5):  # 5 x 1,000 addresses through a set of 4,096
        _, state = extract_features(state, report(
            T0 + batch * MINUTE_MS, connections=addresses(1_000, batch * 1_000)))
    assert state is not None
    assert len(state.known_addresses) == KNOWN_CAP
    assert "10.0.0.0" not in state.known_addresses  # the very first, evicted
    assert "10.0.19.135" in state.known_addresses  # the 5,000th, kept


def test_a_report_with_nothing_new_shares_the_known_sets_instead_of_copying_them() -> None:
    first_report = report(T0, connections=[outbound("203.0.113.5", 443)])
    _, state = extract_features(None, first_report)
    _, next_state = extract_features(state, report(T0 + MINUTE_MS,
                                                   connections=[outbound("203.0.113.5", 443)]))
    assert next_state.known_addresses is state.known_addresses
