"""The alarm lifecycle as pure rules: dedup, rate limit, quiet resolution, feedback, merge, diff."""

from __future__ import annotations

from fleetguard.core.severity import Severity
from fleetguard.detect import (
    Destination,
    Family,
    FirstSeenRule,
    RuleKind,
    RuleSet,
    Subject,
    Verdict,
    default_ruleset,
)
from fleetguard.detect.alarms import (
    AlarmPolicy,
    DeviceFeedback,
    OpenAlarm,
    apply_feedback,
    cause_of,
    plan_alarms,
)
from fleetguard.detect.ruleset_merge import ScopedRuleSet, diff_documents, merge_rulesets

NOW = 1_800_000_000_000
POLICY = AlarmPolicy(quiet_reports_to_resolve=3, max_new_per_minute=2)


def verdict(rule_id: str = "scan.refused-connections", *, kind: RuleKind = RuleKind.THRESHOLD,
            destinations: tuple[Destination, ...] = ()) -> Verdict:
    return Verdict(rule_id=rule_id, kind=kind, family=Family.SCANNING, severity=Severity.HIGH,
                   collected_at_ms=NOW, since_ms=NOW, reports=1, summary="seen",
                   destinations=destinations)


def test_a_verdict_with_an_open_alarm_of_its_cause_updates_it() -> None:
    v = verdict()
    plan = plan_alarms({cause_of(v): OpenAlarm(7, cause_of(v))}, [v], now_ms=NOW,
                       recent_openings_ms=[], policy=POLICY)
    assert plan.updated == ((7, v),) and plan.opened == ()


def test_new_alarms_past_the_rate_limit_within_a_minute_are_suppressed() -> None:
    plan = plan_alarms({}, [verdict("a"), verdict("b")], now_ms=NOW,
                       recent_openings_ms=[NOW - 30_000], policy=POLICY)
    assert [v.rule_id for v in plan.opened] == ["a"] and plan.suppressed == 1


def test_openings_older_than_a_minute_do_not_count_against_the_limit() -> None:
    plan = plan_alarms({}, [verdict("a"), verdict("b")], now_ms=NOW,
                       recent_openings_ms=[NOW - 61_000, NOW - 90_000], policy=POLICY)
    assert len(plan.opened) == 2


def test_an_open_alarm_resolves_after_its_quiet_reports() -> None:
    alarm = OpenAlarm(3, "x:y", quiet_reports=2)
    plan = plan_alarms({"x:y": alarm}, [], now_ms=NOW, recent_openings_ms=[], policy=POLICY)
    assert plan.resolved == (3,)


def test_a_quiet_report_short_of_the_period_only_counts() -> None:
    plan = plan_alarms({"x:y": OpenAlarm(3, "x:y")}, [], now_ms=NOW, recent_openings_ms=[],
                       policy=POLICY)
    assert plan.resolved == () and plan.quiet == {3: 1}


def test_an_allowed_subject_is_taken_out_and_a_verdict_naming_nothing_else_is_dropped() -> None:
    a, b = Destination("198.51.100.7", 443), Destination("203.0.113.9", 23)
    feedback = DeviceFeedback(allowed=frozenset({"destination:198.51.100.7:443"}))
    [kept] = apply_feedback([verdict("beacon", kind=RuleKind.FIRST_SEEN, destinations=(a, b))],
                            feedback)
    assert kept.destinations == (b,)
    assert apply_feedback([verdict("beacon", kind=RuleKind.FIRST_SEEN, destinations=(a,))],
                          feedback) == []


def test_a_suppressed_rule_gives_no_verdict() -> None:
    feedback = DeviceFeedback(suppressed_rules=frozenset({"scan.refused-connections"}))
    assert apply_feedback([verdict()], feedback) == []


def test_a_group_rule_replaces_the_fleet_rule_of_its_id_and_adds_new_ones() -> None:
    fleet = ScopedRuleSet("fleet", 1, default_ruleset())
    replaced = FirstSeenRule(id="exec.first-run", severity=Severity.LOW,
                             family=Family.UNEXPECTED_EXECUTABLE, subject=Subject.EXECUTABLE)
    added = FirstSeenRule(id="lab.listener", severity=Severity.LOW, family=Family.POLICY,
                          subject=Subject.LISTENER)
    group = ScopedRuleSet("group:lab", 2, RuleSet(version=2, rules=(replaced, added)))
    merged = merge_rulesets(fleet, [group])
    by_id = {r.id: r for r in merged.rules}
    assert by_id["exec.first-run"] is replaced and by_id["lab.listener"] is added
    assert len(merged.rules) == len(fleet.ruleset.rules) + 1


def test_a_diff_names_added_removed_and_changed_fields() -> None:
    before = {"rules": [{"id": "a", "value": 1}, {"id": "b", "value": 2}]}
    after = {"rules": [{"id": "a", "value": 5}, {"id": "c", "value": 2}]}
    diff = diff_documents(before, after)
    assert (diff.added, diff.removed) == (("c",), ("b",))
    assert diff.to_dict()["changed"] == [
        {"rule_id": "a", "fields": {"value": {"before": 1, "after": 5}}}]
