"""The detection evaluation measures what detectors do on the simulator's attacks and
benign devices, and judges them against the issue's targets."""

from __future__ import annotations

import math
from dataclasses import dataclass

import pytest

from fleetguard.detect import Family, FeatureVector, Listener
from fleetguard.sim import Profile, Scenario
from fleetguard.sim.evaluation import (
    DETECTORS,
    DetectorSpec,
    EvalSettings,
    EvaluationResult,
    percentile,
    run_evaluation,
)
from fleetguard.sim.evaluation_detectors import (
    PerDevice,
    StaticThresholdDetector,
    calibrate_static_thresholds,
)
from fleetguard.sim.variation import Variation

SMALL = EvalSettings(seeds=1, attack_at_min=(40,), benign_devices=1, benign_hours=6)
RULES, LEARNED, STATIC = (d.name for d in DETECTORS)


@dataclass
class _Fixed:
    fires: bool

    def observe(self, features: FeatureVector) -> list[tuple[str, Family]]:
        return [("always", Family.ANOMALY)] if self.fires else []


def _fixed(name: str, fires: bool) -> DetectorSpec:
    return DetectorSpec(name, lambda _settings: lambda _profile, _first: PerDevice(
        lambda: _Fixed(fires)))


def _listening(ports: int) -> FeatureVector:
    return FeatureVector(
        collected_at_ms=0, values={}, new_baseline=None, destinations=(),
        listeners=tuple(Listener("tcp", 1000 + n) for n in range(ports)), new_destinations=(),
        new_remote_ports=(), listeners_added=(), listeners_removed=(), first_listeners=(),
        executables=(), first_executables=())


@pytest.fixture(scope="module")
def small_run() -> EvaluationResult:
    return run_evaluation(SMALL)


def test_every_scenario_and_variation_is_measured_for_every_detector(
    small_run: EvaluationResult,
) -> None:
    names = {d.name for d in DETECTORS}
    assert set(small_run.scenarios) == set(Scenario)
    assert set(small_run.benign) == set(Variation)
    for by_detector in small_run.scenarios.values():
        assert set(by_detector) == names
        assert {s.trials for s in by_detector.values()} == {len(Profile)}
    for alarms in small_run.benign.values():
        assert {a.device_days for a in alarms.values()} == {len(Profile) * 6 / 24}


@pytest.mark.parametrize("detector", [RULES, LEARNED])
def test_fleetguard_detects_every_attack_naming_its_family(
    small_run: EvaluationResult, detector: str,
) -> None:
    for scenario, by_detector in small_run.scenarios.items():
        stats = by_detector[detector]
        assert stats.rate == 1.0, scenario
        assert stats.median <= 2, scenario
        assert stats.named_family == stats.trials, scenario
        assert stats.early_alarms == 0, scenario


def test_a_detector_that_never_fires_misses_everything_and_fails_its_targets() -> None:
    result = run_evaluation(SMALL, [_fixed("silent", fires=False)])
    for by_detector in result.scenarios.values():
        assert by_detector["silent"].rate == 0 and by_detector["silent"].median == math.inf
    assert result.benign_total("silent").alarms == 0
    assert [(t.name, t.passed) for t in result.targets()] == [
        ("every scenario detected in every trial", False), ("median time to detect", False),
        ("false alarms per device-day", True)]
    assert not result.passed


def test_an_alarm_before_the_attack_is_no_detection_and_counts_once_per_cause() -> None:
    result = run_evaluation(SMALL, [_fixed("noisy", fires=True)])
    for by_detector in result.scenarios.values():
        stats = by_detector["noisy"]
        assert stats.detected == 0 and stats.early_alarms == stats.trials
    # One alarm per benign device: the cause holds on every report, it is not repeated.
    assert result.benign_total("noisy").alarms == len(Variation) * len(Profile)


def test_a_baseline_is_measured_but_not_judged() -> None:
    spec = DetectorSpec("peer", DETECTORS[2].factory, baseline=True)
    result = run_evaluation(SMALL, [_fixed("silent", fires=False), spec])
    assert {t.detector for t in result.targets()} == {"silent"}
    assert result.scenarios[Scenario.FLOOD]["peer"].rate == 1.0


def test_static_thresholds_sit_above_a_day_of_normal_load_per_group() -> None:
    thresholds = calibrate_static_thresholds(SMALL)
    camera, sensor = thresholds[Profile.CAMERA], thresholds[Profile.SENSOR]
    # A camera streams about 250 KB/s, up to 1.6x at its daily peak; a sensor a few bytes.
    assert 250_000 * 1.6 * 1.5 * 0.9 < camera["bytes_out_per_s"] < 250_000 * 1.6 * 1.5 * 1.2
    assert sensor["bytes_out_per_s"] < 1_000
    assert camera["listening_ports"] == 2  # a count: alarm on one port more than normal
    assert StaticThresholdDetector(camera).observe(_listening(3)) == [
        ("static.listening_ports", Family.POLICY)]
    assert StaticThresholdDetector(camera).observe(_listening(2)) == []


def test_the_static_baseline_misses_what_no_fixed_threshold_sees(
    small_run: EvaluationResult,
) -> None:
    # A telnet brute force from a gateway hides under its many peers' connections.
    assert small_run.scenarios[Scenario.TELNET_BRUTEFORCE][STATIC].rate < 1.0
    assert small_run.scenarios[Scenario.TELNET_BRUTEFORCE][RULES].rate == 1.0


def test_a_gateway_moved_to_another_network_is_no_beacon(small_run: EvaluationResult) -> None:
    # Its field devices come back at new addresses in its new network: new destinations, but
    # inside its own networks, which the default first-seen destination rule leaves alone.
    moved = small_run.benign[Variation.MOVED_NETWORK][RULES]
    assert moved.causes == {}


def test_percentiles_are_nearest_rank_with_a_miss_as_never() -> None:
    assert percentile([1, 1, 2, 3], 0.5) == 1
    assert percentile([1, 2, 3, math.inf], 0.9) == math.inf
    assert percentile([2], 0.9) == 2


def test_the_json_document_says_what_each_target_needed_and_measured(
    small_run: EvaluationResult,
) -> None:
    document = small_run.to_document()
    assert document["passed"] == small_run.passed
    targets = document["targets"]
    assert isinstance(targets, list) and {t["detector"] for t in targets} == {RULES, LEARNED}
    scenarios = document["scenarios"]
    assert isinstance(scenarios, list) and len(scenarios) == len(Scenario)
