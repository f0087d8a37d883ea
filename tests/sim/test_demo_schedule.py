"""`fleetguard demo` tells its story in five minutes: the compromised devices attack from
minute 2 to minute 4, the others stay normal, and the ground truth says who, what, when.

The demo's simulator is planned here exactly as `fleetguard demo` has `fleetguard sim` plan
it (its interval and number of compromised devices, open-ended or ``--duration 300``), and
its devices are driven on a simulated clock for five minutes, each report through the
detection core with the shipped rules.
"""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path

import pytest

from fleetguard.cli.demo import (
    DEMO_COMPROMISED,
    DEMO_INTERVAL_S,
    DEMO_LEARNING_WINDOW_S,
    OPEN_ENDED_S,
    attack_window_s,
    demo_environment,
)
from fleetguard.detect import (
    DeviceFeatureState,
    EvaluationContext,
    Family,
    RuleState,
    default_ruleset,
    evaluate,
    extract_features,
)
from fleetguard.sim import (
    FleetSimulator,
    Profile,
    Scenario,
    SimIdentity,
    SimSettings,
    SimTransport,
)
from fleetguard.sim.evaluation_detectors import EvalSettings, LearnedCohort, rules_per_device

DEVICES = 50
FIVE_MINUTES_MS = 300_000
# First-seen rules learn a device's normal for this long after its first report, in the
# demo's server as here; it ends before the first attack (minute 2).
LEARNING_MS = DEMO_LEARNING_WINDOW_S * 1000
FAMILY = {
    Scenario.PORT_SCAN: Family.SCANNING,
    Scenario.TELNET_BRUTEFORCE: Family.BRUTE_FORCE,
    Scenario.EXFILTRATION: Family.EXFILTRATION,
    Scenario.C2_BEACON: Family.BEACON,
    Scenario.NEW_LISTENER: Family.BACKDOOR_LISTENER,
}


def _demo_fleet(duration_s: float, truth: Path | None = None, seed: int = 5) -> FleetSimulator:
    identities = [SimIdentity(str(uuid.uuid4()), f"demo-{i}", b"", b"") for i in range(DEVICES)]
    settings = SimSettings(transport=SimTransport.MQTT, host="127.0.0.1", port=8883,
                           interval_s=DEMO_INTERVAL_S, duration_s=duration_s,
                           compromise=DEMO_COMPROMISED, seed=seed)
    return FleetSimulator(identities, settings, lambda _: pytest.fail("no connection here"),
                          ground_truth=truth)


def _run_five_minutes(sim: FleetSimulator, start_ms: int) -> dict[str, set[Family]]:
    """Every device reports every 10 s (each at its own phase) for five minutes; the
    families the shipped rules flag on each, by device name."""
    rules, interval_ms = default_ruleset(), int(DEMO_INTERVAL_S * 1000)
    flagged: dict[str, set[Family]] = {}
    for index, device in enumerate(sim.devices):
        features_state: DeviceFeatureState | None = None
        rule_state: RuleState | None = None
        first = start_ms + (index * 997) % interval_ms
        context = EvaluationContext(learning_until_ms=first + LEARNING_MS)
        families = flagged.setdefault(device.identity.name, set())
        for now_ms in range(first, start_ms + FIVE_MINUTES_MS, interval_ms):
            report = sim.next_report(device, now_ms)
            features, features_state = extract_features(features_state, report)
            verdicts, rule_state = evaluate(rules, rule_state, features, context)
            families |= {v.family for v in verdicts}
    return flagged


@pytest.mark.parametrize("duration_s", [OPEN_ENDED_S, 300.0], ids=["until-ctrl-c", "300s"])
def test_the_demo_attacks_start_one_after_another_between_minute_2_and_4(
    duration_s: float,
) -> None:
    sim = _demo_fleet(duration_s)
    start_ms = int(time.time() * 1000)
    truth = sim.plan_compromise(start_ms)
    starts_s = sorted((t.active.start_ms - start_ms) / 1000 for t in truth)
    assert starts_s == [120.0, 150.0, 180.0, 210.0, 240.0]
    assert all(t.active.end_ms >= start_ms + FIVE_MINUTES_MS for t in truth)
    assert attack_window_s(DEMO_INTERVAL_S, duration_s, DEMO_COMPROMISED) == (120.0, 240.0)


def test_a_short_run_keeps_its_attacks_inside_it() -> None:
    settings = SimSettings(transport=SimTransport.HTTPS, host="h", port=1, interval_s=1.0,
                           duration_s=4.0, compromise=3)
    starts = settings.attack_starts_s(3)
    assert starts == sorted(starts) and starts[0] > 0 and starts[-1] < 4.0


def test_the_ground_truth_says_which_device_which_attack_and_when(tmp_path: Path) -> None:
    truth_file = tmp_path / "ground-truth.json"
    sim = _demo_fleet(OPEN_ENDED_S, truth_file)
    start_ms = int(time.time() * 1000)
    sim.plan_compromise(start_ms)
    planned = json.loads(truth_file.read_text())
    assert [r["reports_affected"] for r in planned["scenarios"]] == [0] * DEMO_COMPROMISED
    _run_five_minutes(sim, start_ms)
    sim.write_ground_truth()
    records = json.loads(truth_file.read_text())["scenarios"]
    names = {d.identity.name: d.identity.device_id for d in sim.devices}
    assert {r["scenario"] for r in records} == {s.value for s in FAMILY}
    for record in records:
        assert names[record["device_name"]] == record["device_id"]
        assert 120_000 <= record["start_ms"] - start_ms <= 240_000
        # Reported every 10 s from its start to minute 5: 6 to 18 reports carried it.
        assert record["reports_affected"] >= 6, record


def test_by_minute_5_each_compromised_device_is_flagged_for_its_attack_and_no_other_is() -> None:
    sim = _demo_fleet(OPEN_ENDED_S)
    start_ms = int(time.time() * 1000)
    truth = sim.plan_compromise(start_ms)
    flagged = _run_five_minutes(sim, start_ms)
    attacked = {t.device.identity.name: t.active.scenario for t in truth}
    assert {name: FAMILY[s] in flagged[name] for name, s in attacked.items()} == dict.fromkeys(
        attacked, True)
    assert {name: f for name, f in flagged.items() if name not in attacked and f} == {}


def test_the_demo_server_learns_for_less_than_the_time_before_the_first_attack(
    tmp_path: Path,
) -> None:
    from fleetguard.server.detection import detection_config_from_env

    first_attack_s, _ = attack_window_s(DEMO_INTERVAL_S, OPEN_ENDED_S, DEMO_COMPROMISED)
    config = detection_config_from_env(demo_environment(tmp_path))
    assert config.learning_window_s == DEMO_LEARNING_WINDOW_S < first_attack_s


def test_by_minute_5_the_learned_detectors_flag_no_other_device_when_cohorts_are_profiles(
) -> None:
    # Peer comparison and the cohort's model compare a device with the others of its
    # hardware model and groups: here each profile is a cohort, as it is in the server
    # once the simulator registers each device's profile as its hardware model.
    sim = _demo_fleet(OPEN_ENDED_S)
    start_ms = int(time.time() * 1000)
    truth = sim.plan_compromise(start_ms)
    attacked = {t.device.identity.name for t in truth}
    settings = EvalSettings(learning_min=DEMO_LEARNING_WINDOW_S / 60,
                            interval_s=DEMO_INTERVAL_S)
    flagged: set[str] = set()
    for profile in Profile:
        devices = [d for d in sim.devices if d.model.profile is profile]
        cohort = LearnedCohort(rules_per_device(settings, start_ms))
        states: list[DeviceFeatureState | None] = [None] * len(devices)
        for now_ms in range(start_ms, start_ms + FIVE_MINUTES_MS, settings.interval_ms):
            vectors = []
            for i, device in enumerate(devices):
                features, states[i] = extract_features(states[i],
                                                       sim.next_report(device, now_ms))
                vectors.append(features)
            flagged |= {devices[i].identity.name
                        for i, fired in enumerate(cohort.observe(vectors)) if fired}
    assert flagged - attacked == set()
    assert attacked <= flagged
