"""Features of a report from an agent that samples between reports: the whole period counts,
not only its instant; a report without the accumulated fields reads as before."""

from __future__ import annotations

import pytest

from fleetguard.detect import Destination, Feature, Listener, NewBaseline

from .support import (
    MINUTE_MS,
    T0,
    features_of,
    listening,
    opened,
    outbound,
    process,
    report,
    seen,
)

UPSTREAM = outbound("203.0.113.5", 443)


def test_a_destination_seen_during_the_period_counts_though_it_closed_before_the_report() -> None:
    _, beaconing = features_of([
        report(T0, connections=[UPSTREAM], destinations_seen=[seen("203.0.113.5", 443)]),
        report(T0 + MINUTE_MS, connections=[UPSTREAM],
               destinations_seen=[seen("203.0.113.5", 443, samples=60),
                                  seen("198.51.100.66", 6667, samples=1)]),
    ])
    assert Destination("198.51.100.66", 6667) in beaconing.destinations
    assert beaconing.new_destinations == (Destination("198.51.100.66", 6667),)
    assert beaconing.get(Feature.NEW_REMOTE_ADDRESSES) == 1.0
    assert beaconing.new_remote_ports == (6667,)
    assert beaconing.get(Feature.REMOTE_ADDRESSES) == 2.0
    assert beaconing.get(Feature.REMOTE_PORTS) == 2.0


def test_open_connections_and_destinations_seen_are_one_set() -> None:
    (vector,) = features_of([report(T0, connections=[UPSTREAM],
                                    destinations_seen=[seen("203.0.113.5", 443, samples=60)])])
    assert vector.destinations == (Destination("203.0.113.5", 443),)
    assert vector.get(Feature.REMOTE_ADDRESSES) == 1.0


def test_a_listener_opened_and_closed_within_the_period_is_added_and_first_seen() -> None:
    _, brief, after = features_of([
        report(T0, listeners=[listening(22)], listeners_opened=[]),
        report(T0 + MINUTE_MS, listeners=[listening(22)],
               listeners_opened=[opened(4444, T0 + 20_000, closed=True)]),
        report(T0 + 2 * MINUTE_MS, listeners=[listening(22)], listeners_opened=[]),
    ])
    assert brief.listeners_added == (Listener("tcp", 4444),)
    assert brief.first_listeners == (Listener("tcp", 4444),)
    assert brief.get(Feature.LISTENERS_ADDED) == 1.0
    assert Listener("tcp", 4444) in brief.listeners
    # Gone at the report that showed it opening: nothing listens there to be removed later.
    assert (after.listeners_added, after.listeners_removed) == ((), ())


def test_a_listener_opened_during_the_period_and_still_open_is_added_once() -> None:
    _, second, third = features_of([
        report(T0, listeners=[listening(22)], listeners_opened=[]),
        report(T0 + MINUTE_MS, listeners=[listening(22), listening(4444)],
               listeners_opened=[opened(4444, closed=False)]),
        report(T0 + 2 * MINUTE_MS, listeners=[listening(22), listening(4444)],
               listeners_opened=[]),
    ])
    assert second.listeners_added == (Listener("tcp", 4444),)
    assert third.listeners_added == ()


def test_top_process_cpu_is_the_busiest_process_own_cpu_over_the_period() -> None:
    (vector,) = features_of([report(T0, period_ms=MINUTE_MS, cpu=12.0, processes=[
        process("kdevtmpfsi", cpu_seconds=57.0, pid=4242), process("streamer", 9.0)])])
    assert vector.get(Feature.TOP_PROCESS_CPU_PERCENT) == pytest.approx(95.0)
    assert vector.get(Feature.CPU_PERCENT) == 12.0  # the machine's, shared with neighbours


def test_top_process_cpu_is_present_on_a_new_baseline_it_is_no_rate() -> None:
    (first,) = features_of([report(T0, processes=[process("sensord", 3.0)])])
    assert first.new_baseline is NewBaseline.FIRST_REPORT
    assert first.get(Feature.TOP_PROCESS_CPU_PERCENT) == pytest.approx(5.0)


def test_a_report_without_accumulated_fields_reads_from_its_instant_as_before() -> None:
    _, old = features_of([
        report(T0, connections=[UPSTREAM], listeners=[listening(22)]),
        report(T0 + MINUTE_MS, connections=[UPSTREAM, outbound("198.51.100.66", 6667)],
               listeners=[listening(22), listening(4444)]),
    ])
    assert old.get(Feature.TOP_PROCESS_CPU_PERCENT) is None
    assert old.destinations == (Destination("198.51.100.66", 6667),
                                Destination("203.0.113.5", 443))
    assert old.new_destinations == (Destination("198.51.100.66", 6667),)
    assert old.listeners_added == (Listener("tcp", 4444),)


def test_a_device_whose_agent_starts_sampling_raises_nothing_new_for_what_it_already_did() -> None:
    _, upgraded = features_of([
        report(T0, connections=[UPSTREAM], listeners=[listening(22)]),
        report(T0 + MINUTE_MS, connections=[UPSTREAM], listeners=[listening(22)],
               destinations_seen=[seen("203.0.113.5", 443, samples=60)], listeners_opened=[],
               processes=[process("sshd", 0.1)]),
    ])
    assert upgraded.new_destinations == ()
    assert upgraded.listeners_added == ()
