"""The detectors ``fleetguard eval detect`` measures, each over a cohort of devices that
report together (one profile: the same model in the same group).

- ``fleetguard (rules)``: ``detect.default_ruleset()`` per device, first-seen rules
  learning for ``learning_min`` after the device's first report.
- ``fleetguard (rules + learned)``: the same, plus each device against its own learned
  normal (``detect.baselines``), against its cohort in the same window
  (``detect.peers``), and the cohort's Half-Space Trees (``detect.hst``), each with its
  module's default settings.
- ``static thresholds``: the baseline. What a cloud IoT service's rule-based detection
  offers (AWS IoT Device Defender's device-side metrics: bytes and packets in and out,
  established connections, listening ports, plus CPU): one fixed threshold per metric and
  device group, alarming on one datapoint, set at the group's highest value over a
  calibration day of normal operation with diurnal load on other devices (other seeds),
  plus 50 % for rates and CPU and exactly for counts: an operator setting thresholds from
  a day of charts.

A new detector is one more :class:`DetectorSpec` in :data:`DETECTORS`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import numpy.typing as npt

from fleetguard.detect import (
    DeviceFeatureState,
    EvaluationContext,
    Family,
    Feature,
    FeatureVector,
    RuleSet,
    RuleState,
    Verdict,
    default_ruleset,
    evaluate,
    extract_features,
)
from fleetguard.detect.baselines import (
    BaselineSettings,
    FloatArray,
    feature_matrix,
    new_table,
    update_baseline_rows,
)
from fleetguard.detect.hst import HalfSpaceTrees, update_hst_rows
from fleetguard.detect.peers import PeerWindow, peer_verdicts_rows
from fleetguard.sim.profiles import Profile
from fleetguard.sim.variation import DAY_MS, BenignDevice, Variation

T0 = 1_800_000_000_000  # a fixed clock: a seed replays the same run
MINUTE_MS = 60_000
CALIBRATION_SEED = 1_000_003
Fired = list[tuple[str, Family]]  # (cause: a rule id, its family) that fired on a report


@dataclass(frozen=True, slots=True)
class EvalSettings:
    seeds: int = 2
    attack_at_min: tuple[int, ...] = (40, 100)  # after the devices' first report
    horizon_reports: int = 10
    cohort_peers: int = 5  # normal devices beside the attacked ones in an attack cohort
    benign_devices: int = 2  # per variation and profile
    benign_hours: float = 12.0
    interval_s: float = 60.0
    learning_min: float = 30.0  # first-seen rules learn for this long after the first report

    @property
    def interval_ms(self) -> int:
        return int(self.interval_s * 1000)


class DeviceDetector(Protocol):
    """One device's detector: what fires on each of its reports."""

    def observe(self, features: FeatureVector) -> Fired: ...


class CohortDetector(Protocol):
    """A cohort's detector: one report of each device at a time, what fires on each."""

    def observe(self, vectors: Sequence[FeatureVector]) -> list[Fired]: ...


# (profile, the devices' first report's time) -> a detector for one new cohort
DetectorFactory = Callable[[Profile, int], CohortDetector]


def _fired(verdicts: Sequence[Verdict]) -> Fired:
    return [(v.rule_id, v.family) for v in verdicts]


@dataclass(slots=True)
class PerDevice:
    """A cohort detector made of one independent detector per device."""

    make: Callable[[], DeviceDetector]
    devices: list[DeviceDetector] = field(default_factory=list)

    def observe(self, vectors: Sequence[FeatureVector]) -> list[Fired]:
        while len(self.devices) < len(vectors):
            self.devices.append(self.make())
        return [d.observe(v) for d, v in zip(self.devices, vectors, strict=False)]


@dataclass(slots=True)
class RulesDetector:
    ruleset: RuleSet
    context: EvaluationContext
    state: RuleState | None = None

    def observe(self, features: FeatureVector) -> Fired:
        verdicts, self.state = evaluate(self.ruleset, self.state, features, self.context)
        return _fired(verdicts)


@dataclass(slots=True)
class LearnedCohort:
    """Rules, and the learned detectors on their vectorised paths: per-device baselines
    (one bank for the cohort), peers, and the cohort's Half-Space Trees."""

    rules: PerDevice
    baseline_settings: BaselineSettings = field(default_factory=BaselineSettings)
    tables: FloatArray = field(default_factory=lambda: new_table(0))
    reports: npt.NDArray[np.int64] = field(default_factory=lambda: np.zeros(0, np.int64))
    window: PeerWindow = field(default_factory=PeerWindow)
    model: HalfSpaceTrees = field(default_factory=HalfSpaceTrees)

    def observe(self, vectors: Sequence[FeatureVector]) -> list[Fired]:
        fired = self.rules.observe(vectors)
        count = len(vectors)
        if len(self.tables) < count:
            self.tables = np.concatenate([self.tables, new_table(count - len(self.tables))])
            self.reports = np.zeros(count, np.int64)
        x = feature_matrix(vectors)
        at = np.array([v.collected_at_ms for v in vectors], np.int64)
        ids = [str(i) for i in range(count)]
        for i in range(count):
            self.window.observe("cohort", ids[i], x[i], int(at[i]))
        found = update_baseline_rows(self.tables, self.reports, np.arange(count), x, at,
                                     self.baseline_settings)
        found += peer_verdicts_rows(self.window, "cohort", ids, x, int(at.max()))
        found += update_hst_rows(self.model, x, at)
        for i, verdict in found:
            fired[i].append((verdict.rule_id, verdict.family))
        return fired


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

    def observe(self, features: FeatureVector) -> Fired:
        fired: Fired = []
        for metric, limit in self.thresholds.items():
            value = _METRICS[metric](features)
            if value is not None and value > limit:
                fired.append((f"static.{metric}", Family.POLICY))
        return fired


def calibrate_static_thresholds(settings: EvalSettings) -> dict[Profile, dict[str, float]]:
    """Per profile: each metric's highest value in a day of diurnal normal, plus the margin."""
    return {p: dict(t) for p, t in _calibrated(settings.interval_ms).items()}


@functools.lru_cache(maxsize=4)  # the same day of reports for every run at one interval
def _calibrated(interval_ms: int) -> dict[Profile, dict[str, float]]:
    highest: dict[Profile, dict[str, float]] = {p: dict.fromkeys(_METRICS, 0.0) for p in Profile}
    for profile in Profile:
        for n in range(2):
            device = BenignDevice.create(Variation.DIURNAL, profile, index=100 + n,
                                         seed=CALIBRATION_SEED + n, start_ms=T0,
                                         until_ms=T0 + DAY_MS)
            state: DeviceFeatureState | None = None
            for now_ms in range(T0 + interval_ms, T0 + DAY_MS, interval_ms):
                features, state = extract_features(state, device.report(now_ms))
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


def rules_per_device(settings: EvalSettings, first_ms: int) -> PerDevice:
    """The shipped rules, one rule state per device, learning from ``first_ms``."""
    ruleset = default_ruleset()
    context = EvaluationContext(
        learning_until_ms=first_ms + int(settings.learning_min * MINUTE_MS))
    return PerDevice(lambda: RulesDetector(ruleset, context))


def _rules_factory(settings: EvalSettings) -> DetectorFactory:
    return lambda _profile, first_ms: rules_per_device(settings, first_ms)


def _learned_factory(settings: EvalSettings) -> DetectorFactory:
    return lambda _profile, first_ms: LearnedCohort(rules_per_device(settings, first_ms))


def _static_factory(settings: EvalSettings) -> DetectorFactory:
    thresholds = calibrate_static_thresholds(settings)
    return lambda profile, _first_ms: PerDevice(
        lambda: StaticThresholdDetector(thresholds[profile]))


# The detectors of a run, in their column order.
DETECTORS: tuple[DetectorSpec, ...] = (
    DetectorSpec("fleetguard (rules)", _rules_factory),
    DetectorSpec("fleetguard (rules + learned)", _learned_factory),
    DetectorSpec("static thresholds", _static_factory, baseline=True),
)


__all__ = [
    "DETECTORS",
    "CohortDetector",
    "DetectorFactory",
    "DetectorSpec",
    "DeviceDetector",
    "EvalSettings",
    "LearnedCohort",
    "PerDevice",
    "RulesDetector",
    "StaticThresholdDetector",
    "calibrate_static_thresholds",
    "rules_per_device",
]
