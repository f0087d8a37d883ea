"""Rule evaluation: thresholds with a duration, allow-lists, first-seen with a learning
window; each verdict says what fired, on what, since when."""

from __future__ import annotations

from typing import Any

from fleetguard.core.severity import Severity
from fleetguard.detect import (
    Comparison,
    Destination,
    EvaluationContext,
    Executable,
    Family,
    Feature,
    FeatureVector,
    Listener,
    RuleKind,
    RuleSet,
    RuleState,
    Verdict,
    evaluate,
    parse_ruleset,
)

from .support import (
    MINUTE_MS,
    OTHER_BOOT,
    T0,
    eth,
    executable,
    features_of,
    listening,
    outbound,
    report,
)

NO_LEARNING = EvaluationContext()


def _rules(*rules: dict[str, Any]) -> RuleSet:
    return parse_ruleset({"version": 1, "rules": list(rules)})


CPU_HOT_FOR_3 = _rules({"kind": "threshold", "id": "cpu.hot", "severity": "medium",
                        "family": "miner", "feature": "cpu_percent", "comparison": ">=",
                        "value": 90, "for_reports": 3})


def _run(ruleset: RuleSet, vectors: list[FeatureVector],
         context: EvaluationContext = NO_LEARNING) -> list[list[Verdict]]:
    state: RuleState | None = None
    out = []
    for vector in vectors:
        verdicts, state = evaluate(ruleset, state, vector, context)
        out.append(verdicts)
    return out


def _cpu_reports(*cpus: float) -> list[FeatureVector]:
    return features_of(report(T0 + n * MINUTE_MS, cpu=c) for n, c in enumerate(cpus))


def test_a_threshold_fires_only_after_holding_for_its_number_of_reports() -> None:
    fired = _run(CPU_HOT_FOR_3, _cpu_reports(95, 96, 97, 98))
    assert [len(v) for v in fired] == [0, 0, 1, 1]


def test_a_threshold_verdict_says_observed_versus_threshold_and_since_when() -> None:
    verdict = _run(CPU_HOT_FOR_3, _cpu_reports(20, 95, 96, 97))[-1][0]
    assert (verdict.rule_id, verdict.kind, verdict.family, verdict.severity) == (
        "cpu.hot", RuleKind.THRESHOLD, Family.MINER, Severity.MEDIUM)
    assert verdict.features == (Feature.CPU_PERCENT,)
    assert (verdict.observed, verdict.comparison, verdict.threshold) == (
        97.0, Comparison.AT_LEAST, 90.0)
    assert verdict.since_ms == T0 + MINUTE_MS  # the streak began on the second report
    assert verdict.reports == 3
    assert verdict.summary == "cpu_percent 97 >= 90 for 3 report(s)"


def test_one_normal_report_breaks_the_streak() -> None:
    fired = _run(CPU_HOT_FOR_3, _cpu_reports(95, 96, 40, 95, 96))
    assert all(v == [] for v in fired)


def test_a_report_without_the_feature_neither_extends_nor_breaks_the_streak() -> None:
    out_rate = _rules({"kind": "threshold", "id": "exfil", "severity": "high",
                       "feature": "bytes_out_per_s", "comparison": ">", "value": 1000,
                       "for_reports": 2})
    fired = _run(out_rate, features_of([
        report(T0, interfaces=[eth(bytes_out=0)]),
        report(T0 + MINUTE_MS, interfaces=[eth(bytes_out=600_000)]),  # 10 kB/s: 1 of 2
        report(T0 + 2 * MINUTE_MS, boot_id=OTHER_BOOT, interfaces=[eth(bytes_out=0)]),
        report(T0 + 3 * MINUTE_MS, boot_id=OTHER_BOOT, interfaces=[eth(bytes_out=600_000)]),
    ]))
    assert [len(v) for v in fired] == [0, 0, 0, 1]
    assert fired[-1][0].since_ms == T0 + MINUTE_MS


def test_a_below_threshold_catches_a_device_gone_quiet() -> None:
    quiet = _rules({"kind": "threshold", "id": "idle", "severity": "low",
                    "feature": "process_count", "comparison": "<", "value": 50})
    (fired,) = _run(quiet, features_of([report(T0)]))  # 40 processes
    assert [v.rule_id for v in fired] == ["idle"]


EGRESS = _rules({"kind": "allow_list", "id": "egress", "severity": "high",
                 "family": "exfiltration", "subject": "destination",
                 "destinations": [{"cidr": "203.0.113.0/24", "ports": [443]},
                                  {"cidr": "10.0.0.0/8"}]})


def test_a_destination_allow_list_fires_on_an_address_or_port_outside_it() -> None:
    (fired,) = _run(EGRESS, features_of([report(T0, connections=[
        outbound("203.0.113.5", 443), outbound("10.1.2.3", 502),
        outbound("203.0.113.5", 8443), outbound("198.51.100.9", 443)])]))
    (verdict,) = fired
    assert verdict.destinations == (Destination("198.51.100.9", 443),
                                    Destination("203.0.113.5", 8443))
    assert verdict.expected == "203.0.113.0/24 ports 443, 10.0.0.0/8"


def test_a_destination_allow_list_is_quiet_inside_it() -> None:
    (fired,) = _run(EGRESS, features_of([report(T0, connections=[
        outbound("203.0.113.5", 443), outbound("10.1.2.3", 502)])]))
    assert fired == []


def test_a_listener_allow_list_names_the_unexpected_port() -> None:
    ports = _rules({"kind": "allow_list", "id": "ports", "severity": "high",
                    "subject": "listener", "listening_ports": [22, 80]})
    (fired,) = _run(ports, features_of([report(T0, listeners=[
        listening(22), listening(80), listening(31337)])]))
    assert [v.listeners for v in fired] == [(Listener("tcp", 31337),)]


def test_an_executable_allow_list_takes_path_patterns_and_hashes() -> None:
    trusted = "cd" * 32
    binaries = _rules({"kind": "allow_list", "id": "bins", "severity": "high",
                       "subject": "executable", "paths": ["/usr/*"], "sha256": [trusted]})
    (fired,) = _run(binaries, features_of([report(T0, executables=[
        executable("/usr/bin/updater"), executable("/tmp/helper", trusted),
        executable("/tmp/.x/dropper", "ef" * 32)])]))
    assert [v.executables for v in fired] == [(Executable("/tmp/.x/dropper", "ef" * 32),)]


FIRST_LISTENER = _rules({"kind": "first_seen", "id": "new-listener", "severity": "high",
                         "family": "backdoor_listener", "subject": "listener"})


def _listener_reports() -> list[FeatureVector]:
    return features_of([
        report(T0, listeners=[listening(80)]),
        report(T0 + 10 * MINUTE_MS, listeners=[listening(80), listening(8080)]),
        report(T0 + 40 * MINUTE_MS, listeners=[listening(80), listening(8080),
                                               listening(4444)]),
    ])


def test_first_seen_is_quiet_in_the_learning_window_and_fires_after_it() -> None:
    learning = EvaluationContext(learning_until_ms=T0 + 30 * MINUTE_MS)
    fired = _run(FIRST_LISTENER, _listener_reports(), learning)
    assert [[v.listeners for v in f] for f in fired] == [[], [], [(Listener("tcp", 4444),)]]


def test_what_was_learned_in_the_window_does_not_fire_after_it() -> None:
    learning = EvaluationContext(learning_until_ms=T0 + 30 * MINUTE_MS)
    fired = _run(FIRST_LISTENER, features_of([
        report(T0, listeners=[listening(80)]),
        report(T0 + 10 * MINUTE_MS, listeners=[listening(80), listening(8080)]),
        report(T0 + 40 * MINUTE_MS, listeners=[listening(80), listening(8080)]),
    ]), learning)
    assert fired == [[], [], []]


def test_first_seen_destination_names_the_new_destination() -> None:
    first_destination = _rules({"kind": "first_seen", "id": "new-destination",
                                "severity": "medium", "family": "beacon",
                                "subject": "destination"})
    fired = _run(first_destination, features_of([
        report(T0, connections=[outbound("203.0.113.5", 443)]),
        report(T0 + MINUTE_MS, connections=[outbound("203.0.113.5", 443),
                                            outbound("198.51.100.66", 6667)]),
    ]), EvaluationContext(learning_until_ms=T0 + 1))
    (verdict,) = fired[-1]
    assert verdict.destinations == (Destination("198.51.100.66", 6667),)
    assert verdict.remote_ports == (6667,)
    assert verdict.summary == "first destination ever seen: 198.51.100.66:6667"


EXTERNAL_DESTINATION = _rules({"kind": "first_seen", "id": "new-destination",
                               "severity": "medium", "family": "beacon",
                               "subject": "destination", "scope": "external"})


def test_an_external_scope_ignores_new_destinations_in_the_devices_own_networks() -> None:
    fired = _run(EXTERNAL_DESTINATION, features_of([
        report(T0, connections=[outbound("203.0.113.5", 443)]),
        report(T0 + MINUTE_MS, connections=[
            outbound("203.0.113.5", 443), outbound("10.1.7.20", 502),
            outbound("192.168.4.1", 53), outbound("fd00::7", 8883),
            outbound("::ffff:172.20.0.9", 80), outbound("198.51.100.66", 6667)]),
    ]), EvaluationContext(learning_until_ms=T0 + 1))
    (verdict,) = fired[-1]
    assert verdict.destinations == (Destination("198.51.100.66", 6667),)
    assert verdict.remote_ports == (6667,)


def test_an_external_scope_on_only_local_new_destinations_is_quiet() -> None:
    fired = _run(EXTERNAL_DESTINATION, features_of([
        report(T0, connections=[outbound("203.0.113.5", 443)]),
        report(T0 + MINUTE_MS, connections=[outbound("10.9.0.3", 502),
                                            outbound("100.64.1.1", 443)]),
    ]), EvaluationContext(learning_until_ms=T0 + 1))
    assert fired[-1] == []


def test_evaluation_does_not_change_the_state_it_was_given() -> None:
    vectors = _cpu_reports(95, 96)
    _, state = evaluate(CPU_HOT_FOR_3, None, vectors[0], NO_LEARNING)
    evaluate(CPU_HOT_FOR_3, state, vectors[1], NO_LEARNING)
    assert state.streaks["cpu.hot"].reports == 1


def test_an_ipv6_destination_with_a_zone_is_matched_by_its_address() -> None:
    v6 = _rules({"kind": "allow_list", "id": "v6", "severity": "low",
                 "subject": "destination", "destinations": [{"cidr": "fe80::/10"}]})
    (fired,) = _run(v6, features_of([report(T0, connections=[
        outbound("fe80::1%eth0", 443), outbound("2001:db8::7", 443)])]))
    assert [d.address for v in fired for d in v.destinations] == ["2001:db8::7"]


def _cpu_rule(value: float, version: int) -> RuleSet:
    return parse_ruleset({"version": version, "rules": [
        {"kind": "threshold", "id": "cpu.hot", "severity": "medium", "feature": "cpu_percent",
         "comparison": ">=", "value": value, "for_reports": 3}]})


def test_a_new_version_of_the_rule_set_keeps_the_streak_of_an_unchanged_rule() -> None:
    vectors = _cpu_reports(95, 96, 97)
    _, state = evaluate(_cpu_rule(90, 1), None, vectors[0], NO_LEARNING)
    _, state = evaluate(_cpu_rule(90, 1), state, vectors[1], NO_LEARNING)
    fired, _ = evaluate(_cpu_rule(90, 2), state, vectors[2], NO_LEARNING)
    assert [v.reports for v in fired] == [3]


def test_a_changed_rule_counts_its_streak_anew() -> None:
    vectors = _cpu_reports(95, 96, 97)
    _, state = evaluate(_cpu_rule(90, 1), None, vectors[0], NO_LEARNING)
    _, state = evaluate(_cpu_rule(90, 1), state, vectors[1], NO_LEARNING)
    fired, state = evaluate(_cpu_rule(94, 2), state, vectors[2], NO_LEARNING)
    assert fired == []
    assert state.streaks["cpu.hot"].since_ms == vectors[2].collected_at_ms
