"""Measured detection quality: the simulator's attacks and benign variation through the
detection core, beside a plain static-threshold baseline, in the same run.

Devices run in cohorts of one profile that report together (what peer comparison and a
cohort's model need). An *attack cohort* (per profile, seed and start time) is one device
per scenario plus ``cohort_peers`` normal ones; at the start time (after the first-seen
rules' learning window) each attacked device's scenario starts at its own random moment
between two reports, and goes on. *Time to detect* is the number of the first report with
an alarm, counting the first report that carries any of the attack as 1 (so an attack that
starts a second before a report may take 2); none within ``horizon_reports`` is a miss.
Percentiles are nearest-rank over every trial, a miss counting as never. Alarms on an
attacked device before its attack are counted (``early_alarms``), not as detections.

A *benign cohort* (per profile) is ``benign_devices`` devices of each variation (see
:mod:`fleetguard.sim.variation`) reporting for ``benign_hours``; a *false alarm* is an
alarm on one: one per device and cause (rule id) while the cause holds on consecutive
reports, as an alarm queue deduplicates them.

The detectors (:mod:`fleetguard.sim.evaluation_detectors`) see the same feature vectors
(``extract_features`` once per report).
"""

from __future__ import annotations

import math
import random
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field

from fleetguard.detect import DeviceFeatureState, Family, extract_features
from fleetguard.protocol import TelemetryReport
from fleetguard.sim.evaluation_detectors import (
    DETECTORS,
    MINUTE_MS,
    T0,
    DetectorFactory,
    DetectorSpec,
    EvalSettings,
    Fired,
)
from fleetguard.sim.profiles import ActiveScenario, DeviceModel, Profile, Scenario, scenario_target
from fleetguard.sim.variation import DAY_MS, BenignDevice, Variation

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
    profiles: Counter[str] = field(default_factory=Counter)  # alarms by device profile

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
            total.profiles.update(stats.profiles)
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
                           "per_device_day_upper_95": a.upper_95, "causes": dict(a.causes),
                           "profiles": dict(a.profiles)}
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


def _seed(name: str) -> int:
    """A device's seed, from what it is in the run: the same name, the same device."""
    return random.Random(name).getrandbits(64)  # noqa: S311 - a simulation


def _run_cohort(devices: Sequence[Callable[[int], TelemetryReport]], profile: Profile,
                until_ms: int, settings: EvalSettings, factories: dict[str, DetectorFactory],
                on_alarms: Callable[[str, int, int, Fired], None]) -> None:
    """Every device reports every interval until ``until_ms``; ``on_alarms(detector,
    device, report time, the alarms raised anew)`` for each device with new alarms."""
    first_ms = T0 + settings.interval_ms
    detectors = {name: make(profile, first_ms) for name, make in factories.items()}
    alarms = {name: [_Alarms() for _ in devices] for name in factories}
    states: list[DeviceFeatureState | None] = [None] * len(devices)
    for at_ms in range(first_ms, until_ms, settings.interval_ms):
        vectors = []
        for i, report in enumerate(devices):
            features, states[i] = extract_features(states[i], report(at_ms))
            vectors.append(features)
        for name, detector in detectors.items():
            for i, fired in enumerate(detector.observe(vectors)):
                fresh = alarms[name][i].new(fired)
                if fresh:
                    on_alarms(name, i, at_ms, fresh)


def _attack_cohort(profile: Profile, seed: int, at_min: int, settings: EvalSettings,
                   factories: dict[str, DetectorFactory],
                   results: dict[Scenario, dict[str, DetectionStats]]) -> None:
    interval = settings.interval_ms
    cohort = f"attack/{profile.value}/{seed}/{at_min}"
    models = [DeviceModel(index=3 + i, profile=profile, now_ms=T0,
                          rng=random.Random(_seed(f"{cohort}/{i}")))  # noqa: S311
              for i in range(len(Scenario) + settings.cohort_peers)]
    starts: list[int] = []
    for scenario, model in zip(Scenario, models, strict=False):
        starts.append(T0 + at_min * MINUTE_MS + model.rng.randrange(1, interval))
        target, port = scenario_target(scenario, model)
        model.add_scenario(ActiveScenario(scenario, starts[-1], 2**62, target, port))
    found: dict[tuple[str, int], float] = {}
    families: dict[tuple[str, int], set[Family]] = {}

    def on_alarms(name: str, device: int, at_ms: int, fresh: Fired) -> None:
        if device >= len(starts):
            return  # a normal peer
        attacked = (at_ms - starts[device]) // interval + 1 if at_ms > starts[device] else 0
        if not attacked:
            results[list(Scenario)[device]][name].early_alarms += len(fresh)
        elif attacked <= settings.horizon_reports:
            found.setdefault((name, device), attacked)
            families.setdefault((name, device), set()).update(f for _, f in fresh)

    until_ms = max(starts) + settings.horizon_reports * interval + 1
    _run_cohort([m.report for m in models], profile, until_ms, settings, factories, on_alarms)
    for device, scenario in enumerate(Scenario):
        for name in factories:
            stats = results[scenario][name]
            stats.reports.append(found.get((name, device), math.inf))
            stats.named_family += FAMILY[scenario] in families.get((name, device), set())


def _benign_cohort(profile: Profile, settings: EvalSettings,
                   factories: dict[str, DetectorFactory],
                   results: dict[Variation, dict[str, AlarmStats]]) -> None:
    until_ms = T0 + settings.interval_ms + int(settings.benign_hours * 3_600_000)
    devices = [
        BenignDevice.create(variation, profile, index=10 + len(Variation) * n + number,
                            seed=_seed(f"benign/{profile.value}/{variation.value}/{n}"),
                            start_ms=T0, until_ms=until_ms)
        for number, variation in enumerate(Variation) for n in range(settings.benign_devices)]

    def on_alarms(name: str, device: int, _at_ms: int, fresh: Fired) -> None:
        stats = results[devices[device].variation][name]
        stats.alarms += len(fresh)
        stats.causes.update(cause for cause, _ in fresh)
        stats.profiles[profile.value] += len(fresh)

    _run_cohort([d.report for d in devices], profile, until_ms, settings, factories, on_alarms)
    for device in devices:
        for name in factories:
            results[device.variation][name].device_days += (
                until_ms - T0 - settings.interval_ms) / DAY_MS


def run_evaluation(settings: EvalSettings | None = None,
                   detectors: Sequence[DetectorSpec] = DETECTORS,
                   progress: Callable[[str], None] | None = None) -> EvaluationResult:
    """Every scenario on every profile, seed and start time, and every benign variation."""
    settings = settings or EvalSettings()
    factories = {spec.name: spec.factory(settings) for spec in detectors}
    result = EvaluationResult(settings, list(detectors), {}, {})
    for scenario in Scenario:
        result.scenarios[scenario] = {name: DetectionStats() for name in factories}
    for variation in Variation:
        result.benign[variation] = {name: AlarmStats() for name in factories}
    for profile in Profile:
        if progress is not None:
            progress(f"attacks on {profile.value}s")
        for seed in range(settings.seeds):
            for at_min in settings.attack_at_min:
                _attack_cohort(profile, seed, at_min, settings, factories, result.scenarios)
        if progress is not None:
            progress(f"benign {profile.value}s")
        _benign_cohort(profile, settings, factories, result.benign)
    return result


__all__ = [
    "DETECTORS",
    "FAMILY",
    "AlarmStats",
    "DetectionStats",
    "DetectorSpec",
    "EvalSettings",
    "EvaluationResult",
    "Target",
    "percentile",
    "run_evaluation",
]
