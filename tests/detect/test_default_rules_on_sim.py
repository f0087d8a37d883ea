"""The shipped default rules against the simulator's devices and attacks, driven directly.

Each device reports every minute; the first-seen rules learn for its first 30 minutes.
An attack starts at a random moment between two reports, so its first report may cover
only a second of it: "within 2 reports" is the bar.
"""

from __future__ import annotations

import pytest

from fleetguard.detect import Family, RuleSet, Verdict, default_ruleset, parse_ruleset
from fleetguard.detect.defaults import DEFAULT_RULESET_DOCUMENT
from fleetguard.sim import ActiveScenario, Profile, Scenario
from fleetguard.sim.profiles import scenario_target

from .support import MINUTE_MS, Watched

RULES = default_ruleset()
FAMILY = {
    Scenario.PORT_SCAN: Family.SCANNING,
    Scenario.TELNET_BRUTEFORCE: Family.BRUTE_FORCE,
    Scenario.EXFILTRATION: Family.EXFILTRATION,
    Scenario.C2_BEACON: Family.BEACON,
    Scenario.NEW_LISTENER: Family.BACKDOOR_LISTENER,
    Scenario.CRYPTOMINER: Family.MINER,
    Scenario.FLOOD: Family.FLOODING,
}
SEEDS = range(8)
WARM_UP_REPORTS = 45  # past the 30-minute learning window


def _attacked(profile: Profile, scenario: Scenario, seed: int,
              ruleset: RuleSet = RULES) -> Watched:
    """A device past its learning window, attacked from a moment between two reports."""
    watched = Watched.device(profile, ruleset, seed=seed)
    assert watched.run(WARM_UP_REPORTS) == []
    target, port = scenario_target(scenario, watched.model)
    start = watched.now_ms + 1 + (seed * 7_919) % MINUTE_MS
    watched.attack(ActiveScenario(scenario, start, start + 30 * MINUTE_MS, target, port))
    return watched


def _reports_to_detect(watched: Watched, family: Family, limit: int = 10) -> int | None:
    for n in range(1, limit + 1):
        if family in {v.family for v in watched.step()}:
            return n
    return None


@pytest.mark.parametrize("profile", list(Profile))
@pytest.mark.parametrize("scenario", [s for s in Scenario if s is not Scenario.C2_BEACON])
def test_each_attack_is_flagged_with_its_family_within_two_reports(
    scenario: Scenario, profile: Profile
) -> None:
    latencies = {seed: _reports_to_detect(_attacked(profile, scenario, seed), FAMILY[scenario])
                 for seed in SEEDS}
    assert all(n is not None and n <= 2 for n in latencies.values()), latencies


@pytest.mark.parametrize("profile", list(Profile))
def test_a_beacon_is_flagged_within_two_reports(profile: Profile) -> None:
    latencies = {seed: _reports_to_detect(_attacked(profile, Scenario.C2_BEACON, seed),
                                          Family.BEACON) for seed in SEEDS}
    assert all(n is not None and n <= 2 for n in latencies.values()), latencies


def test_a_beacon_is_flagged_from_what_the_agent_saw_over_the_period_not_its_instant() -> None:
    for seed in SEEDS:
        watched = _attacked(Profile.CAMERA, Scenario.C2_BEACON, seed)
        target = watched.model.scenarios[0].target
        verdicts = watched.step()
        report = watched.last_report
        assert report is not None and report.destinations_seen is not None
        assert Family.BEACON in {v.family for v in verdicts}, seed
        assert target in {d.address for d in report.destinations_seen}
        assert target not in {c.remote_address for c in report.connections}  # 200 ms of 60 s


def test_a_beacon_verdict_names_the_new_destination() -> None:
    watched = _attacked(Profile.SENSOR, Scenario.C2_BEACON, seed=1)
    active = watched.model.scenarios[0]
    verdicts: list[Verdict] = []
    while not verdicts:
        verdicts = [v for v in watched.step() if v.family is Family.BEACON]
    assert [(d.address, d.port) for d in verdicts[0].destinations] == [
        (active.target, active.port)]


def test_a_miner_is_named_with_its_binary_and_its_pool() -> None:
    watched = _attacked(Profile.CAMERA, Scenario.CRYPTOMINER, seed=2)
    verdicts = watched.step() + watched.step()
    by_rule = {v.rule_id: v for v in verdicts}
    assert by_rule["exec.outside-system-paths"].executables[0].path == "/tmp/kdevtmpfsi"
    assert by_rule["beacon.new-destination"].destinations[0].port == 3333
    assert by_rule["miner.cpu-pinned"].observed is not None
    assert by_rule["miner.cpu-pinned"].observed >= 90
    assert by_rule["miner.cpu-pinned"].description == "CPU pinned for two reports in a row"


def test_a_miner_is_flagged_by_its_own_process_cpu_once_it_ran_two_whole_reports() -> None:
    # What catches it where the machine's CPU is shared (a container, a namespaced device):
    # the first report covers only part of its run, the next two are pinned throughout.
    watched = _attacked(Profile.SENSOR, Scenario.CRYPTOMINER, seed=2)
    flagged = [[v for v in watched.step() if v.rule_id == "miner.process-cpu-pinned"]
               for _ in range(3)]
    assert [bool(v) for v in flagged] == [False, False, True]
    assert flagged[2][0].observed is not None and flagged[2][0].observed >= 90


def test_a_backdoor_listener_is_named_with_its_port() -> None:
    watched = _attacked(Profile.GATEWAY, Scenario.NEW_LISTENER, seed=3)
    port = watched.model.scenarios[0].port
    (verdict,) = [v for v in watched.step() if v.rule_id == "backdoor.new-listener"]
    assert [x.port for x in verdict.listeners] == [port]


@pytest.mark.parametrize("profile", list(Profile))
def test_a_benign_device_raises_nothing_over_hours_of_normal_variation_and_a_reboot(
    profile: Profile,
) -> None:
    for seed in SEEDS:
        watched = Watched.device(profile, RULES, seed=seed)
        before = watched.run(180)
        watched.reboot()
        after = watched.run(180)
        assert before + after == [], (seed, [v.summary for v in before + after])


def test_a_benign_device_reporting_at_irregular_intervals_raises_nothing() -> None:
    watched = Watched.device(Profile.CAMERA, RULES, seed=11)
    for n in range(240):
        assert watched.step(interval_ms=(20 + (n * 37) % 100) * 1000) == [], n


def test_the_default_rules_cover_every_family_and_are_a_valid_document() -> None:
    assert parse_ruleset(DEFAULT_RULESET_DOCUMENT) == RULES
    assert {rule.family for rule in RULES.rules} == set(Family) - {Family.POLICY, Family.ANOMALY}
