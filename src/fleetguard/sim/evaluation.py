"""Measured detection quality: the simulator's attacks and benign variation through the
detection core, beside a plain static-threshold baseline, in the same run.

Attack trials: a device of each profile reports every ``interval_s``; at one of several
start times (after the first-seen rules' learning window) a scenario starts at a random
moment between two reports and goes on. *Time to detect* is the number of the first report
with an alarm, counting the first report that carries any of the attack as 1 (so an attack
that starts a second before a report may take 2); none within ``horizon_reports`` is a miss.
Percentiles are nearest-rank over every trial, a miss counting as never.

Benign devices (see :mod:`fleetguard.sim.variation`) report for ``benign_hours``; a *false
alarm* is an alarm on one: one per device and cause (rule id) while the cause holds on
consecutive reports, as an alarm queue deduplicates them. Alarms on attack trials before
their attack starts are counted too (``early_alarms``), not as detections.

Detectors are per-device objects that see the same feature vectors (``extract_features``
once per report): the shipped rules (``detect.default_ruleset()``), and the baseline. A
new detector is one entry in :data:`DETECTORS`.

The baseline is what a cloud IoT service's rule-based detection offers (AWS IoT Device
Defender's device-side metrics: bytes and packets in and out, established connections,
listening ports, plus CPU): one fixed threshold per metric and device group (profile),
alarming on one datapoint, set at the group's highest value over a calibration day of
normal operation with diurnal load on other devices (other seeds), plus 50 % for rates and
CPU and exactly for counts: an operator setting thresholds from a day of charts.
"""

from __future__ import annotations

import math
import random
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from typing import Protocol

from fleetguard.detect import (
    DeviceFeatureState,
    EvaluationContext,
    Family,
    Feature,
    FeatureVector,
    RuleSet,
    RuleState,
    default_ruleset,
    evaluate,
    extract_features,
)
from fleetguard.protocol import TelemetryReport
from fleetguard.sim.profiles import ActiveScenario, DeviceModel, Profile, Scenario, scenario_target
from fleetguard.sim.variation import DAY_MS, BenignDevice, Variation

T0 = 1_800_000_000_000  # a fixed clock: a seed replays the same run
MINUTE_MS = 60_000
FAMILY = {
    Scenario.PORT_SCAN: Family.SCANNING,
    Scenario.TELNET_BRUTEFORCE: Family.BRUTE_FORCE,
    Scenario.EXFILTRATION: Family.EXFILTRATION,
    Scenario.C2_BEACON: Family.BEACON,
    Scenario.NEW_LISTENER: Family.BACKDOOR_LISTENER,
    Scenario.CRYPTOMINER: Family.MINER,
    Scenario.FLOOD: Family.FLOODING,
}
TARGET_MEDIAN_REPORTS = 2
TARGET_FALSE_ALARMS_PER_DEVICE_DAY = 0.01
CALIBRATION_SEED = 1_000_003


@dataclass(frozen=True, slots=True)
class EvalSettings:
    seeds: int = 3
    attack_at_min: tuple[int, ...] = (40, 100)  # after the device's first report
    horizon_reports: int = 10
    benign_devices: int = 2  # per variation and profile
    benign_hours: float = 24.0
    interval_s: float = 60.0
    learning_min: float = 30.0  # first-seen rules learn for this long after the first report

    @property
    def interval_ms(self) -> int:
        return int(self.interval_s * 1000)


class DeviceDetector(Protocol):
    """One device's detector: the causes (rule ids) that fire on each report, and families."""

    def observe(self, features: FeatureVector) -> list[tuple[str, Family]]: ...


# (profile, the device's first report's time) -> a fresh detector for one device
DetectorFactory = Callable[[Profile, int], DeviceDetector]


@dataclass(slots=True)
class RulesDetector:
    ruleset: RuleSet
    context: EvaluationContext
    state: RuleState | None = None

    def observe(self, features: FeatureVector) -> list[tuple[str, Family]]:
        verdicts, self.state = evaluate(self.ruleset, self.state, features, self.context)
        return [(v.rule_id, v.family) for v in verdicts]


# The baseline's metrics: Device Defender's device-side ones on the same features, and CPU.
_METRICS: dict[str, Callable[[FeatureVector], float | None]] = {
    "bytes_out_per_s": lambda f: f.get(Feature.BYTES_OUT_PER_S),
    "bytes_in_per_s": lambda f: f.get(Feature.BYTES_IN_PER_S),
    "packets_out_per_s": lambda f: f.get(Feature.PACKETS_OUT_PER_S),
    "packets_in_per_s": lambda f: f.get(Feature.PACKETS_IN_PER_S),
    "cpu_percent": lambda f: f.get(Feature.CPU_PERCENT),
    "connections": lambda f: f.get(Feature.CONNECTIONS),
    "listening_ports": lambda f: float(len(f.listeners)),
}
_COUNTS = frozenset({"connections", "listening_ports"})


@dataclass(slots=True)
class StaticThresholdDetector:
    thresholds: dict[str, float]  # metric -> alarm above this

    def observe(self, features: FeatureVector) -> list[tuple[str, Family]]:
        fired = []
        for metric, limit in self.thresholds.items():
            value = _METRICS[metric](features)
            if value is not None and value > limit:
                fired.append((f"static.{metric}", Family.POLICY))
        return fired


def calibrate_static_thresholds(settings: EvalSettings) -> dict[Profile, dict[str, float]]:
    """Per profile: each metric's highest value in a day of diurnal normal, plus the margin."""
    highest: dict[Profile, dict[str, float]] = {p: dict.fromkeys(_METRICS, 0.0) for p in Profile}
    for profile in Profile:
        for n in range(2):
            device = BenignDevice.create(Variation.DIURNAL, profile, index=100 + n,
                                         seed=CALIBRATION_SEED + n, start_ms=T0,
                                         until_ms=T0 + DAY_MS)
            for features in _features(device.report, T0, T0 + DAY_MS, settings.interval_ms):
                for metric, read in _METRICS.items():
                    value = read(features)
                    if value is not None:
                        highest[profile][metric] = max(highest[profile][metric], value)
    return {p: {m: v if m in _COUNTS else v * 1.5 for m, v in by_metric.items()}
            for p, by_metric in highest.items()}


@dataclass(frozen=True, slots=True)
class DetectorSpec:
    name: str
    factory: Callable[[EvalSettings], DetectorFactory]  # given the run's settings
    baseline: bool = False  # a peer to compare with, not judged against the targets


def _rules_factory(settings: EvalSettings) -> DetectorFactory:
    ruleset = default_ruleset()
    learning_ms = int(settings.learning_min * MINUTE_MS)
    return lambda _profile, first_ms: RulesDetector(
        ruleset, EvaluationContext(learning_until_ms=first_ms + learning_ms))


def _static_factory(settings: EvalSettings) -> DetectorFactory:
    thresholds = calibrate_static_thresholds(settings)
    return lambda profile, _first_ms: StaticThresholdDetector(thresholds[profile])


# The detectors of a run, in their column order. Add one here (a learned model, peer
# comparison) and it is measured and judged beside the others.
DETECTORS: tuple[DetectorSpec, ...] = (
    DetectorSpec("fleetguard (rules)", _rules_factory),
    DetectorSpec("static thresholds", _static_factory, baseline=True),
)


def _features(report: Callable[[int], TelemetryReport], first_ms: int, until_ms: int,
              interval_ms: int) -> Iterator[FeatureVector]:
    state: DeviceFeatureState | None = None
    for now_ms in range(first_ms, until_ms, interval_ms):
        features, state = extract_features(state, report(now_ms))
        yield features


def percentile(values: Sequence[float], share: float) -> float:
    """Nearest-rank percentile (``share`` in 0..1]; ``inf`` stands for a miss."""
    ordered = sorted(values)
    return ordered[max(math.ceil(share * len(ordered)) - 1, 0)]


@dataclass(slots=True)
class DetectionStats:
    reports: list[float] = field(default_factory=list)  # per trial; inf: missed
    named_family: int = 0  # trials with an alarm of the scenario's family (horizon)
    early_alarms: int = 0  # alarms before the attack started

    @property
    def trials(self) -> int:
        return len(self.reports)

    @property
    def detected(self) -> int:
        return sum(1 for r in self.reports if r != math.inf)

    @property
    def rate(self) -> float:
        return self.detected / self.trials if self.trials else 0.0

    @property
    def median(self) -> float:
        return percentile(self.reports, 0.5) if self.reports else math.inf

    @property
    def p90(self) -> float:
        return percentile(self.reports, 0.9) if self.reports else math.inf


@dataclass(slots=True)
class AlarmStats:
    device_days: float = 0.0
    alarms: int = 0
    causes: Counter[str] = field(default_factory=Counter)

    @property
    def per_device_day(self) -> float:
        return self.alarms / self.device_days if self.device_days else 0.0

    @property
    def upper_95(self) -> float:
        """95 % upper bound of the rate (Poisson; 3/n when none was seen)."""
        if not self.device_days:
            return math.inf
        return _poisson_upper_95(self.alarms) / self.device_days


def _poisson_upper_95(count: int) -> float:
    # Exact for 0 (3.0); for more, a Wilson-Hilferty approximation of the chi-square bound.
    if count == 0:
        return 3.0
    k = count + 1
    return k * (1 - 1 / (9 * k) + 1.645 / (3 * math.sqrt(k))) ** 3


@dataclass(slots=True)
class EvaluationResult:
    settings: EvalSettings
    detectors: list[DetectorSpec]
    scenarios: dict[Scenario, dict[str, DetectionStats]]
    benign: dict[Variation, dict[str, AlarmStats]]

    def benign_total(self, detector: str) -> AlarmStats:
        total = AlarmStats()
        for by_detector in self.benign.values():
            stats = by_detector[detector]
            total.device_days += stats.device_days
            total.alarms += stats.alarms
            total.causes.update(stats.causes)
        return total

    def targets(self) -> list[Target]:
        checks = []
        for spec in self.detectors:
            if spec.baseline:
                continue
            stats = [by[spec.name] for by in self.scenarios.values()]
            lowest = min(s.rate for s in stats)
            slowest = max(s.median for s in stats)
            fa = self.benign_total(spec.name).per_device_day
            checks += [
                Target(spec.name, "every scenario detected in every trial", "100%",
                       f"{lowest:.0%} (lowest)", lowest == 1.0),
                Target(spec.name, "median time to detect",
                       f"<= {TARGET_MEDIAN_REPORTS} reports", f"{_reports(slowest)} (slowest)",
                       slowest <= TARGET_MEDIAN_REPORTS),
                Target(spec.name, "false alarms per device-day",
                       f"< {TARGET_FALSE_ALARMS_PER_DEVICE_DAY}", f"{fa:.3f}",
                       fa < TARGET_FALSE_ALARMS_PER_DEVICE_DAY),
            ]
        return checks

    @property
    def passed(self) -> bool:
        return all(t.passed for t in self.targets())

    def to_document(self) -> dict[str, object]:
        """The whole result as plain JSON data (a miss's time to detect is null)."""
        return {
            "settings": asdict(self.settings),
            "detectors": [{"name": d.name, "baseline": d.baseline} for d in self.detectors],
            "scenarios": [
                {"scenario": scenario.value, "detectors": {
                    name: {"trials": s.trials, "detected": s.detected, "rate": s.rate,
                           "median_reports": _finite(s.median), "p90_reports": _finite(s.p90),
                           "named_family": s.named_family, "early_alarms": s.early_alarms,
                           "reports": [_finite(r) for r in s.reports]}
                    for name, s in by_detector.items()}}
                for scenario, by_detector in self.scenarios.items()],
            "benign": [
                {"variation": variation.value, "detectors": {
                    name: {"device_days": a.device_days, "false_alarms": a.alarms,
                           "per_device_day": a.per_device_day,
                           "per_device_day_upper_95": a.upper_95, "causes": dict(a.causes)}
                    for name, a in by_detector.items()}}
                for variation, by_detector in self.benign.items()],
            "targets": [asdict(t) for t in self.targets()],
            "passed": self.passed,
        }


@dataclass(frozen=True, slots=True)
class Target:
    detector: str
    name: str
    required: str
    measured: str
    passed: bool


def _finite(value: float) -> float | None:
    return None if value == math.inf else value


def _reports(value: float) -> str:
    return "never" if value == math.inf else f"{value:g}"


class _Alarms:
    """Alarm episodes of one detector on one device: a cause firing anew is one alarm."""

    def __init__(self) -> None:
        self.active: set[str] = set()

    def new(self, fired: list[tuple[str, Family]]) -> list[tuple[str, Family]]:
        causes = {cause for cause, _ in fired}
        fresh = [(c, f) for c, f in fired if c not in self.active]
        self.active = causes
        return fresh


def _trial(scenario: Scenario, profile: Profile, seed: int, attack_at_min: int,
           settings: EvalSettings, factories: dict[str, DetectorFactory],
           results: dict[str, DetectionStats]) -> None:
    interval = settings.interval_ms
    model = DeviceModel(index=3 + seed, profile=profile,
                        rng=random.Random(seed * 7_919 + attack_at_min), now_ms=T0)  # noqa: S311
    first_ms = T0 + interval
    start_ms = T0 + attack_at_min * MINUTE_MS + model.rng.randrange(1, interval)
    target, port = scenario_target(scenario, model)
    model.add_scenario(ActiveScenario(scenario, start_ms, 2**62, target, port))
    detectors = {name: make(profile, first_ms) for name, make in factories.items()}
    alarms = {name: _Alarms() for name in factories}
    found: dict[str, float] = {}
    families: dict[str, set[Family]] = {name: set() for name in factories}
    last_ms = start_ms + settings.horizon_reports * interval
    for n, features in enumerate(_features(model.report, first_ms, last_ms, interval)):
        at_ms = first_ms + n * interval
        attacked = (at_ms - start_ms) // interval + 1 if at_ms > start_ms else 0
        for name, detector in detectors.items():
            fresh = alarms[name].new(detector.observe(features))
            if fresh and not attacked:
                results[name].early_alarms += len(fresh)
            elif fresh:
                found.setdefault(name, attacked)
                families[name] |= {family for _, family in fresh}
    for name in factories:
        results[name].reports.append(found.get(name, math.inf))
        results[name].named_family += FAMILY[scenario] in families[name]


def _benign_device(device: BenignDevice, settings: EvalSettings,
                   factories: dict[str, DetectorFactory],
                   results: dict[str, AlarmStats]) -> None:
    first_ms = T0 + settings.interval_ms
    until_ms = device.until_ms
    detectors = {name: make(device.model.profile, first_ms) for name, make in factories.items()}
    alarms = {name: _Alarms() for name in factories}
    for features in _features(device.report, first_ms, until_ms, settings.interval_ms):
        for name, detector in detectors.items():
            for cause, _family in alarms[name].new(detector.observe(features)):
                results[name].alarms += 1
                results[name].causes[cause] += 1
    for name in factories:
        results[name].device_days += (until_ms - first_ms) / DAY_MS


def run_evaluation(settings: EvalSettings | None = None,
                   detectors: Sequence[DetectorSpec] = DETECTORS,
                   progress: Callable[[str], None] | None = None) -> EvaluationResult:
    """Every scenario on every profile, seed and start time, and every benign variation."""
    settings = settings or EvalSettings()
    factories = {spec.name: spec.factory(settings) for spec in detectors}
    result = EvaluationResult(settings, list(detectors), {}, {})
    for scenario in Scenario:
        if progress is not None:
            progress(scenario.value)
        stats = result.scenarios[scenario] = {name: DetectionStats() for name in factories}
        for profile in Profile:
            for seed in range(settings.seeds):
                for at_min in settings.attack_at_min:
                    _trial(scenario, profile, seed, at_min, settings, factories, stats)
    until_ms = T0 + settings.interval_ms + int(settings.benign_hours * 3_600_000)
    for number, variation in enumerate(Variation):
        if progress is not None:
            progress(variation.value)
        alarms = result.benign[variation] = {name: AlarmStats() for name in factories}
        for profile in Profile:
            for n in range(settings.benign_devices):
                device = BenignDevice.create(
                    variation, profile, index=10 + n, seed=number * 1_000 + n * 31 + 1,
                    start_ms=T0, until_ms=until_ms)
                _benign_device(device, settings, factories, alarms)
    return result


__all__ = [
    "DETECTORS",
    "AlarmStats",
    "DetectionStats",
    "DetectorSpec",
    "DeviceDetector",
    "EvalSettings",
    "EvaluationResult",
    "RulesDetector",
    "StaticThresholdDetector",
    "Target",
    "calibrate_static_thresholds",
    "percentile",
    "run_evaluation",
]
