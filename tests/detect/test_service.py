"""The detection service on a real database: reports in, alarms out, state kept across restarts."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from fleetguard.detect.alarm_records import AlarmFilter, get_alarm, list_alarms
from fleetguard.detect.alarms import AlarmPolicy, AlarmState, AlarmVerdict
from fleetguard.detect.ruleset_merge import FLEET_SCOPE, group_scope
from fleetguard.detect.rulesets import activate_ruleset
from fleetguard.detect.service import AlarmChange, DetectionConfig, DetectionService
from fleetguard.detect.triage import give_verdict, resolve_alarm
from fleetguard.protocol import TelemetryReport
from fleetguard.registry import GroupKind
from fleetguard.registry import groups as registry_groups
from fleetguard.registry import service as registry
from fleetguard.store import Database
from tests.detect.support import MINUTE_MS, T0, eth, listening, net, outbound, report

QUIET_CONFIG = DetectionConfig(learning_window_s=0, persist_every_s=3600)


@dataclass
class Reporter:
    """A device that reports every minute; ``scan()`` makes its next reports a port scan."""

    device_id: str
    at_ms: int = T0
    failures: int = 0
    listeners: list[int] = field(default_factory=lambda: [22])
    destinations: list[tuple[str, int]] = field(default_factory=lambda: [("192.0.2.10", 443)])
    scanning: bool = False

    def next(self) -> TelemetryReport:
        self.at_ms += MINUTE_MS
        if self.scanning:
            self.failures += 155 * 60  # Mirai-style: 155 refused connections a second
        return report(self.at_ms, counters=net(tcp_attempt_fails=self.failures),
                      listeners=[listening(p) for p in self.listeners],
                      connections=[outbound(a, p) for a, p in self.destinations])


def register(db: Database, name: str = "cam-1", labels: dict[str, str] | None = None) -> str:
    with db.session() as session:
        return registry.register_device(session, name=name, actor="test", labels=labels).id


@pytest.fixture
def service(db: Database) -> Iterator[DetectionService]:
    detection = DetectionService(db, config=QUIET_CONFIG)
    detection.start()
    yield detection
    detection.stop()


def feed(service: DetectionService, device: Reporter, reports: int) -> None:
    for _ in range(reports):
        service.observe(device.device_id, device.next())
    assert service.flush(30)


def alarms(db: Database, **flt: Any) -> list[Any]:
    with db.session() as session:
        return list_alarms(session, AlarmFilter(**flt)).alarms


def test_a_port_scan_opens_a_scanning_alarm_within_two_reports(
    db: Database, service: DetectionService
) -> None:
    device = Reporter(register(db))
    feed(service, device, 1)
    device.scanning = True
    feed(service, device, 1)
    [alarm] = alarms(db)
    assert (alarm.rule_id, alarm.family.value, alarm.severity.value, alarm.state) == (
        "scan.refused-connections", "scanning", "high", AlarmState.ACTIVE)
    assert alarm.observed == pytest.approx(155) and alarm.threshold == 2
    assert alarm.reports.first_seq == alarm.reports.last_seq == device.at_ms // 1000


def test_a_cause_that_goes_on_updates_its_alarm_instead_of_repeating_it(
    db: Database, service: DetectionService
) -> None:
    device = Reporter(register(db))
    feed(service, device, 1)
    device.scanning = True
    feed(service, device, 3)
    [alarm] = alarms(db)
    assert alarm.report_count == 3
    assert alarm.reports.last_seq - alarm.reports.first_seq == 120  # three reports a minute apart


def test_an_alarm_resolves_after_its_quiet_period_and_a_new_one_opens_when_it_fires_again(
    db: Database,
) -> None:
    config = DetectionConfig(learning_window_s=0, policy=AlarmPolicy(quiet_reports_to_resolve=3))
    service = DetectionService(db, config=config)
    service.start()
    try:
        device = Reporter(register(db))
        feed(service, device, 1)
        device.scanning = True
        feed(service, device, 1)
        device.scanning = False
        feed(service, device, 3)
        [first] = alarms(db)
        assert (first.state, first.resolved_by) == (AlarmState.RESOLVED, "detection")
        device.scanning = True
        feed(service, device, 1)
        assert [a.state for a in alarms(db)] == [AlarmState.ACTIVE, AlarmState.RESOLVED]
    finally:
        service.stop()


def test_new_alarms_past_the_rate_limit_are_counted_as_suppressed(db: Database) -> None:
    config = DetectionConfig(learning_window_s=0, policy=AlarmPolicy(max_new_per_minute=1))
    service = DetectionService(db, config=config)
    service.start()
    try:
        device = Reporter(register(db))
        feed(service, device, 1)
        device.scanning = True
        device.listeners.append(4444)  # a second cause on the same report
        feed(service, device, 1)
        [alarm] = alarms(db)
        assert alarm.suppressed == 1
        assert service.stats().alarms_suppressed == 1
    finally:
        service.stop()


def test_a_restart_neither_relearns_nor_alarms_again(db: Database) -> None:
    device = Reporter(register(db))
    first = DetectionService(db, config=QUIET_CONFIG)
    first.start()
    feed(first, device, 1)
    device.listeners.append(8080)
    feed(first, device, 1)  # first listener on 8080: an alarm
    first.stop()  # writes the state
    second = DetectionService(db, config=QUIET_CONFIG)
    second.start()
    try:
        feed(second, device, 2)  # 8080 is known: nothing new
        assert [a.rule_id for a in alarms(db)] == ["backdoor.new-listener"]
        device.scanning = True
        feed(second, device, 1)  # rates go on from the stored counters: no new baseline
        assert "scan.refused-connections" in {a.rule_id for a in alarms(db)}
    finally:
        second.stop()


def test_first_seen_rules_are_quiet_within_the_learning_window(db: Database) -> None:
    service = DetectionService(db, config=DetectionConfig(learning_window_s=3600))
    service.start()
    try:
        device = Reporter(register(db), at_ms=T0)
        feed(service, device, 1)
        device.listeners.append(4444)
        feed(service, device, 1)
        assert alarms(db) == []
    finally:
        service.stop()


def _scan_threshold(value: float) -> dict[str, Any]:
    return {"version": 1, "rules": [
        {"kind": "threshold", "id": "scan.refused-connections", "family": "scanning",
         "severity": "low", "feature": "tcp_failures_per_s", "comparison": ">",
         "value": value}]}


def test_a_group_rule_set_replaces_the_fleet_rule_of_the_same_id_from_the_next_report(
    db: Database, service: DetectionService
) -> None:
    device = Reporter(register(db, labels={"site": "lab"}))
    with db.session() as session:
        registry_groups.create_group(session, name="lab", kind=GroupKind.DYNAMIC,
                                     label_query="site=lab", actor="test")
        activate_ruleset(session, group_scope("lab"), _scan_threshold(10_000), actor="test")
    feed(service, device, 1)
    device.scanning = True
    feed(service, device, 1)
    assert alarms(db) == []  # 155/s is under the group's 10,000/s


def test_a_fleet_activation_is_in_force_for_the_next_report(
    db: Database, service: DetectionService
) -> None:
    device = Reporter(register(db))
    feed(service, device, 1)
    with db.session() as session:
        activate_ruleset(session, FLEET_SCOPE, _scan_threshold(100), actor="test")
    device.scanning = True
    feed(service, device, 1)
    [alarm] = alarms(db)
    assert (alarm.severity.value, alarm.threshold) == ("low", 100)


def test_a_false_positive_on_a_first_seen_alarm_allows_its_subject_on_that_device(
    db: Database, service: DetectionService
) -> None:
    device = Reporter(register(db))
    other = Reporter(register(db, "cam-2"))
    feed(service, device, 1)
    feed(service, other, 1)
    device.destinations.append(("198.51.100.7", 8883))
    feed(service, device, 1)
    [alarm] = alarms(db)
    with db.session() as session:
        give_verdict(session, alarm.id, AlarmVerdict.FALSE_POSITIVE, actor="operator:ann",
                     note="the vendor's new cloud endpoint")
    # The same address under an allow-list now: allowed on this device, not on the other.
    with db.session() as session:
        activate_ruleset(session, FLEET_SCOPE, {"version": 1, "rules": [
            {"kind": "allow_list", "id": "egress", "severity": "medium",
             "subject": "destination", "destinations": [{"cidr": "192.0.2.0/24"}]}]},
            actor="test")
    other.destinations.append(("198.51.100.7", 8883))
    feed(service, device, 1)
    feed(service, other, 1)
    assert {a.device_id for a in alarms(db, states=frozenset({AlarmState.ACTIVE}))} == {
        other.device_id}


def test_a_false_positive_on_a_threshold_suppresses_the_rule_on_that_device(
    db: Database, service: DetectionService
) -> None:
    device = Reporter(register(db))
    feed(service, device, 1)
    device.scanning = True
    feed(service, device, 1)
    [alarm] = alarms(db)
    with db.session() as session:
        _, feedback = give_verdict(session, alarm.id, AlarmVerdict.FALSE_POSITIVE,
                                   actor="operator:ann", note="a network test")
    assert feedback[0].subject is None and feedback[0].until is not None
    feed(service, device, 3)
    [only] = alarms(db)
    assert only.state is AlarmState.RESOLVED  # resolved by the verdict, and not reopened


def test_an_alarm_resolved_by_an_operator_while_its_cause_goes_on_opens_a_new_one(
    db: Database, service: DetectionService
) -> None:
    device = Reporter(register(db))
    feed(service, device, 1)
    device.scanning = True
    feed(service, device, 1)
    [alarm] = alarms(db)
    with db.session() as session:
        resolve_alarm(session, alarm.id, actor="operator:ann")
    feed(service, device, 1)
    states = sorted(a.state.value for a in alarms(db))
    assert states == ["active", "resolved"]


def test_observe_never_blocks_and_counts_what_it_drops(db: Database) -> None:
    service = DetectionService(db, config=DetectionConfig(max_queue=1))  # not started
    device = Reporter(register(db))
    service.observe(device.device_id, device.next())
    service.observe(device.device_id, device.next())
    assert service.stats().dropped == 1


def test_listeners_hear_of_alarms_and_a_failing_one_harms_nothing(
    db: Database, service: DetectionService
) -> None:
    heard: list[AlarmChange] = []
    done = threading.Event()

    def failing(change: AlarmChange) -> None:
        raise RuntimeError("a broken webhook")

    def listening_one(change: AlarmChange) -> None:
        heard.append(change)
        done.set()

    service.add_listener(failing)
    service.add_listener(listening_one)
    device = Reporter(register(db))
    feed(service, device, 1)
    device.scanning = True
    feed(service, device, 2)
    assert done.wait(5)
    assert [c.change for c in heard] == ["opened", "updated"]
    assert heard[0].alarm.rule_id == "scan.refused-connections"
    assert service.stats().listener_failures == 2


def test_reports_of_a_device_the_registry_does_not_hold_are_skipped(
    db: Database, service: DetectionService
) -> None:
    stranger = Reporter("6a1f4a0e-0000-4000-8000-00000000dead")
    feed(service, stranger, 2)
    assert service.stats().skipped == 2 and alarms(db) == []


def test_an_opened_alarm_is_in_the_audit_log(db: Database, service: DetectionService) -> None:
    from fleetguard.auditlog import list_audit_entries

    device = Reporter(register(db))
    feed(service, device, 1)
    device.scanning = True
    feed(service, device, 1)
    with db.session() as session:
        [alarm] = alarms(db)
        assert get_alarm(session, alarm.id).id == alarm.id
        entries = [e for e in list_audit_entries(session) if e.action == "alarm.open"]
    assert entries and entries[0].actor == "detection"



def test_a_learned_baseline_flags_what_no_rule_does_and_keeps_its_state_across_a_restart(
    db: Database,
) -> None:
    from fleetguard.detect.learned import BaselineDetector

    device_id = register(db)
    at, sent = T0, 0

    def traffic(per_s: int) -> TelemetryReport:
        nonlocal at, sent
        at += MINUTE_MS
        sent += per_s * 60
        return report(at, interfaces=[eth(bytes_out=sent)])

    first = DetectionService(db, config=QUIET_CONFIG, detectors=[BaselineDetector()])
    first.start()
    for i in range(30):
        first.observe(device_id, traffic(20_000 + 500 * (i % 3)))  # a camera's steady stream
    assert first.flush(30)
    first.stop()
    assert alarms(db) == []
    second = DetectionService(db, config=QUIET_CONFIG, detectors=[BaselineDetector()])
    second.start()
    try:
        second.observe(device_id, traffic(400_000))  # 20x its normal, under every rule
        assert second.flush(30)
        [alarm] = alarms(db)
        assert (alarm.kind.value, alarm.rule_id) == ("baseline", "baseline.bytes_out_per_s")
        assert alarm.expected_high is not None and alarm.expected_high < 400_000
    finally:
        second.stop()
