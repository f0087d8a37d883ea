"""Per-device learned normal: a robust online estimate of each feature, and its band. Pure.

``update_baseline(state, features, settings)`` returns the report's verdicts and the
device's next :class:`BaselineState`; ``band(state, feature)`` is the normal band drawn
behind a chart; ``warm_up(state)`` says how far the device is from having one.

**The estimator: a winsorised EWMA of location and of absolute deviation**, per feature.
Each observation is first clipped to ``mean +- clip * width`` (winsorising: one wild value
moves the estimate by at most ``alpha * clip * width``), then ``mean += alpha * (x - mean)``
and ``scale += alpha * (|x - mean| - scale)``. During warm-up ``alpha`` is ``1/n`` (an
exact running mean of the first values), then ``settings.alpha`` (a memory of about
``1/alpha`` reports: an hour at one report a minute, fast enough to follow a diurnal
cycle, slow enough that an attack is not learned within it). An observation that is
flagged is learned at ``flagged_learning`` of that rate, so a lasting new normal (a
firmware that streams more) is absorbed within hours, while an attack stays flagged.
Why not a streaming median (P², reservoir): a reservoir costs tens of values per feature
(kilobytes per device), P² five markers and a quantile update that is not elementwise;
the winsorised EWMA is three numbers per feature, bounded in influence like a median,
and its update is the same few array operations for one device or ten thousand (the
vectorised path, :func:`update_baseline_rows`).

The band is ``mean +- k * width``, ``width = max(scale, rel_floor * |mean|, floor[f])``:
the floors keep a feature that never varied (a sensor's zero failed connections) from
flagging its first tick. An absent feature (a rate on a new baseline: first report,
reboot, late report) is not observed: it neither updates the estimate nor breaks a streak.
A value the operator accepted (feedback, :mod:`fleetguard.detect.feedback`) widens the
band for good.

State: a ``(ROWS, F)`` float64 table (mean, scale, count, streak, streak start, accepted
low and high per feature) and a report count: ``7 * 24 * 8 = 1,344`` bytes of numbers
(:meth:`BaselineState.to_bytes` is 1,352 bytes); about 1.7 KB per device in memory with
the array's and the state's headers (``tests/detect/test_baselines_properties.py``,
``pytest -s`` prints it; ``update_baseline_rows`` keeps 1,344 bytes per device in a bank).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Self

import numpy as np
import numpy.typing as npt

from fleetguard.core.severity import Severity
from fleetguard.detect.features import Feature, FeatureVector
from fleetguard.detect.rules import Comparison, Confidence, Family, RuleKind, Verdict

FloatArray = npt.NDArray[np.float64]
FEATURES: tuple[Feature, ...] = tuple(Feature)  # column order of every learned table
FEATURE_INDEX: Mapping[Feature, int] = MappingProxyType({f: i for i, f in enumerate(FEATURES)})
MEAN, SCALE, COUNT, STREAK, SINCE, ACCEPT_LOW, ACCEPT_HIGH = range(7)
ROWS = 7

# The least spread a feature is given, in its own unit: below it, variation is noise.
_RATE = 0.1  # connections per second: one every ten seconds
DEFAULT_FLOORS: Mapping[Feature, float] = MappingProxyType({
    Feature.BYTES_IN_PER_S: 2_000.0, Feature.BYTES_OUT_PER_S: 2_000.0,
    # A download's acknowledgements are a few hundred packets a second; a flood, thousands.
    Feature.PACKETS_IN_PER_S: 100.0, Feature.PACKETS_OUT_PER_S: 100.0,
    Feature.TCP_ATTEMPTS_PER_S: _RATE, Feature.TCP_FAILURES_PER_S: _RATE,
    Feature.TCP_INBOUND_PER_S: _RATE, Feature.TCP_RESETS_PER_S: _RATE,
    Feature.TCP_RETRANSMITS_PER_S: 1.0,
    Feature.UDP_IN_PER_S: 5.0, Feature.UDP_OUT_PER_S: 5.0, Feature.UDP_NO_PORT_PER_S: 1.0,
    Feature.CPU_PERCENT: 5.0, Feature.PROCESS_COUNT: 3.0, Feature.AUTH_FAILURES: 3.0,
    Feature.CONNECTIONS: 2.0, Feature.REMOTE_ADDRESSES: 2.0, Feature.REMOTE_PORTS: 2.0,
    Feature.NEW_REMOTE_ADDRESSES: 1.0, Feature.NEW_REMOTE_PORTS: 1.0,
    # One new listener or binary is far outside a device that never shows one.
    Feature.LISTENERS_ADDED: 0.15, Feature.LISTENERS_REMOVED: 0.15,
    Feature.NEW_EXECUTABLES: 0.15,
    Feature.TOP_PROCESS_CPU_PERCENT: 5.0,
})

# What a feature far *above* normal most likely means; below normal, or any other
# feature, is an anomaly with no known family.
FEATURE_FAMILY: Mapping[Feature, Family] = MappingProxyType({
    Feature.BYTES_OUT_PER_S: Family.EXFILTRATION,
    Feature.PACKETS_OUT_PER_S: Family.FLOODING,
    Feature.UDP_OUT_PER_S: Family.FLOODING,
    Feature.TCP_FAILURES_PER_S: Family.SCANNING,
    Feature.NEW_REMOTE_ADDRESSES: Family.SCANNING,
    Feature.TCP_ATTEMPTS_PER_S: Family.BRUTE_FORCE,
    Feature.AUTH_FAILURES: Family.BRUTE_FORCE,
    Feature.CPU_PERCENT: Family.MINER,
    Feature.TOP_PROCESS_CPU_PERCENT: Family.MINER,
    Feature.LISTENERS_ADDED: Family.BACKDOOR_LISTENER,
    Feature.NEW_EXECUTABLES: Family.UNEXPECTED_EXECUTABLE,
})


# Inbound traffic above normal is what a download (a firmware update) looks like, and no
# attack family on the device: judged below normal only (a device gone quiet).
NOT_FLAGGED_ABOVE: frozenset[Feature] = frozenset({Feature.BYTES_IN_PER_S,
                                                   Feature.PACKETS_IN_PER_S})
# A busy minute (a firmware install) is normal; a CPU pinned for two reports is not.
DEFAULT_FOR_REPORTS: Mapping[Feature, int] = MappingProxyType({
    Feature.CPU_PERCENT: 2, Feature.TOP_PROCESS_CPU_PERCENT: 2})


def feature_row(features: FeatureVector) -> FloatArray:
    """The report's values in :data:`FEATURES` order; an absent one is NaN."""
    values = features.values
    return np.fromiter((values.get(f, math.nan) for f in FEATURES), np.float64, len(FEATURES))


def feature_matrix(vectors: Sequence[FeatureVector]) -> FloatArray:
    """Many reports' values, one row each (the input of every vectorised path)."""
    nan = math.nan
    return np.array([[v.values.get(f, nan) for f in FEATURES] for v in vectors],
                    dtype=np.float64).reshape(len(vectors), len(FEATURES))


def column_median(values: FloatArray) -> tuple[FloatArray, npt.NDArray[np.int64]]:
    """Median of each column ignoring NaN (NaN where a column is empty), and the counts."""
    ordered = np.sort(values, axis=0)  # NaN sorts last
    count = np.count_nonzero(~np.isnan(values), axis=0)
    low = np.maximum((count - 1) // 2, 0)
    high = np.maximum(count // 2, 0)
    take = np.take_along_axis
    median = (take(ordered, low[None, :], 0)[0] + take(ordered, high[None, :], 0)[0]) / 2
    return np.where(count > 0, median, np.nan), count


def floors_array(floors: Mapping[Feature, float]) -> FloatArray:
    return np.array([floors.get(f, 0.0) for f in FEATURES], dtype=np.float64)


def family_of(feature: Feature, above: bool) -> Family:
    return FEATURE_FAMILY.get(feature, Family.ANOMALY) if above else Family.ANOMALY


def learned_confidence(margin: float, mature: bool) -> Confidence:
    """How sure: ``margin`` is how many times the band's half-width the value lies out."""
    if margin >= 2.0 and mature:
        return Confidence.HIGH
    if margin >= 1.25:
        return Confidence.MEDIUM
    return Confidence.LOW


def learned_severity(confidence: Confidence, family: Family) -> Severity:
    if confidence is Confidence.LOW:
        return Severity.LOW
    if confidence is Confidence.HIGH and family is not Family.ANOMALY:
        return Severity.HIGH
    return Severity.MEDIUM


@dataclass(frozen=True, slots=True)
class BaselineSettings:
    warm_up_reports: int = 20  # observations of a feature before its band is used
    k: float = 6.0  # band half-width in widths
    alpha: float = 1 / 64  # learning rate once warm
    clip: float = 3.0  # winsorising, in widths
    flagged_learning: float = 0.25  # share of alpha for a flagged observation
    rel_floor: float = 0.1  # least width, relative to the mean
    for_reports: int = 1  # consecutive reports outside before a verdict
    flag_below: bool = True  # also flag a value far below normal
    floors: Mapping[Feature, float] = field(default_factory=lambda: DEFAULT_FLOORS)
    for_reports_by_feature: Mapping[Feature, int] = field(
        default_factory=lambda: DEFAULT_FOR_REPORTS)
    not_flagged_above: frozenset[Feature] = NOT_FLAGGED_ABOVE

    def __deepcopy__(self, memo: dict[int, object]) -> Self:
        return self  # immutable (its floors a read-only mapping): a copy may share it

    def __post_init__(self) -> None:
        if self.warm_up_reports < 1 or self.for_reports < 1:
            raise ValueError("warm_up_reports and for_reports must be at least 1")
        if not (0 < self.alpha <= 1 and 0 <= self.flagged_learning <= 1):
            raise ValueError("alpha must be in (0, 1] and flagged_learning in [0, 1]")
        if self.k <= 0 or self.clip <= 0 or self.rel_floor < 0:
            raise ValueError("k and clip must be positive, rel_floor not negative")


@dataclass(frozen=True, slots=True)
class WarmUp:
    reports_seen: int
    reports_needed: int

    @property
    def ready(self) -> bool:
        return self.reports_seen >= self.reports_needed


def new_table(devices: int = 1) -> FloatArray:
    """An empty learned table for ``devices`` devices: nothing counted, nothing accepted."""
    table = np.zeros((devices, ROWS, len(FEATURES)), dtype=np.float64)
    table[:, ACCEPT_LOW] = math.inf
    table[:, ACCEPT_HIGH] = -math.inf
    return table


@dataclass(frozen=True, slots=True)
class BaselineState:
    """One device's learned normal: a ``(ROWS, F)`` table and its report count."""

    reports: int
    table: FloatArray

    @classmethod
    def empty(cls) -> BaselineState:
        return cls(0, _frozen(new_table(1)[0]))

    def to_bytes(self) -> bytes:
        """Plain numbers, little-endian: the report count, then the table."""
        return np.array([self.reports], "<i8").tobytes() + self.table.astype("<f8").tobytes()

    @classmethod
    def from_bytes(cls, data: bytes) -> BaselineState:
        size = 8 * (1 + ROWS * len(FEATURES))
        if len(data) != size:
            raise ValueError(f"a baseline state is {size} bytes, not {len(data)}")
        reports = int(np.frombuffer(data[:8], "<i8")[0])
        table = np.frombuffer(data[8:], "<f8").reshape(ROWS, len(FEATURES)).astype(np.float64)
        return cls(reports, _frozen(table))


def _frozen(table: FloatArray) -> FloatArray:
    table.flags.writeable = False
    return table


@dataclass(frozen=True, slots=True)
class _Step:
    """One vectorised step over B devices: the new tables and what was flagged."""

    tables: FloatArray  # (B, ROWS, F)
    flagged: npt.NDArray[np.bool_]  # (B, F)
    low: FloatArray  # the band each observation was judged against
    high: FloatArray
    margin: FloatArray  # distance beyond the mean, in band half-widths


@dataclass(frozen=True, slots=True)
class Columns:
    """Per-feature settings as arrays in :data:`FEATURES` order."""

    floors: FloatArray
    for_reports: FloatArray
    above: npt.NDArray[np.bool_]  # flagged when above the band


def columns(floors: Mapping[Feature, float], for_reports: int,
            by_feature: Mapping[Feature, int], not_above: frozenset[Feature]) -> Columns:
    return Columns(
        floors_array(floors),
        np.array([max(for_reports, by_feature.get(f, 1)) for f in FEATURES], np.float64),
        np.array([f not in not_above for f in FEATURES]))


def _advance(tables: FloatArray, x: FloatArray, at_ms: FloatArray,
             settings: BaselineSettings, cols: Columns) -> _Step:
    """Judge ``x`` (B, F; NaN absent) against ``tables`` (B, ROWS, F), then learn it."""
    mean, scale, count = tables[:, MEAN], tables[:, SCALE], tables[:, COUNT]
    streak, since = tables[:, STREAK], tables[:, SINCE]
    present = ~np.isnan(x)
    xs = np.where(present, x, mean)
    width = np.maximum(np.maximum(scale, settings.rel_floor * np.abs(mean)), cols.floors)
    half = settings.k * width
    low, high = mean - half, mean + half
    accepted = (xs >= tables[:, ACCEPT_LOW]) & (xs <= tables[:, ACCEPT_HIGH])
    ready = count >= settings.warm_up_reports
    above = (xs > high) & cols.above
    outside = present & ready & ~accepted & (above | ((xs < low) & settings.flag_below))
    new_streak = np.where(present, np.where(outside, streak + 1, 0.0), streak)
    new_since = np.where(outside & (streak == 0), at_ms[:, None], since)
    flagged = outside & (new_streak >= cols.for_reports)

    n = count + present
    alpha = np.where(n <= settings.warm_up_reports, 1.0 / np.maximum(n, 1.0), settings.alpha)
    alpha = np.where(outside, alpha * settings.flagged_learning, alpha)
    reach = settings.clip * width
    clipped = np.where(count >= 4, np.clip(xs, mean - reach, mean + reach), xs)
    first = count == 0
    new_mean = np.where(first, xs, mean + alpha * (clipped - mean))
    new_scale = np.where(first, 0.0, scale + alpha * (np.abs(clipped - mean) - scale))
    out = tables.copy()
    out[:, MEAN] = np.where(present, new_mean, mean)
    out[:, SCALE] = np.where(present, new_scale, scale)
    out[:, COUNT] = n
    out[:, STREAK] = new_streak
    out[:, SINCE] = new_since
    margin = np.abs(xs - mean) / np.maximum(half, 1e-300)
    return _Step(out, flagged, low, high, margin)


def _verdict(feature: Feature, observed: float, low: float, high: float, margin: float,
             count: int, streak: int, since_ms: int, at_ms: int,
             settings: BaselineSettings) -> Verdict:
    above = observed > high
    family = family_of(feature, above)
    confidence = learned_confidence(margin, count >= 2 * settings.warm_up_reports)
    low = max(low, 0.0)  # every feature is a count, a rate or a share: never negative
    where = "above" if above else "below"
    return Verdict(
        rule_id=f"baseline.{feature.value}", kind=RuleKind.BASELINE, family=family,
        severity=learned_severity(confidence, family), collected_at_ms=at_ms,
        since_ms=since_ms, reports=streak,
        summary=(f"{feature.value} {observed:g} {where} this device's normal "
                 f"{low:g}..{high:g} (learned over {count} reports)"),
        description="unlike this device's own learned normal",
        features=(feature,), observed=observed,
        comparison=Comparison.ABOVE if above else Comparison.BELOW,
        threshold=high if above else low, confidence=confidence,
        expected_low=low, expected_high=high)


def _verdicts_of(step: _Step, row: int, before: FloatArray, x: FloatArray, at_ms: int,
                 settings: BaselineSettings) -> list[Verdict]:
    """The verdicts of one device in a step (``before`` its table, ``x`` its values)."""
    columns = np.flatnonzero(step.flagged[row])
    if columns.size == 0:
        return []  # the common case, decided before any text is made
    table = step.tables[row]
    return [
        _verdict(FEATURES[c], float(x[c]), float(step.low[row, c]), float(step.high[row, c]),
                 float(step.margin[row, c]), int(before[COUNT, c]), int(table[STREAK, c]),
                 int(table[SINCE, c]), at_ms, settings)
        for c in columns
    ]


_COLUMNS: dict[int, tuple[BaselineSettings, Columns]] = {}


def _columns(settings: BaselineSettings) -> Columns:
    """The settings' per-feature arrays, made once per settings object."""
    cached = _COLUMNS.get(id(settings))
    if cached is None or cached[0] is not settings:
        cached = (settings, columns(settings.floors, settings.for_reports,
                                    settings.for_reports_by_feature, settings.not_flagged_above))
        if len(_COLUMNS) >= 64:
            _COLUMNS.clear()  # settings are few in a process; tests make many
        _COLUMNS[id(settings)] = cached
    return cached[1]


def update_baseline(state: BaselineState | None, features: FeatureVector,
                    settings: BaselineSettings) -> tuple[list[Verdict], BaselineState]:
    """The report's verdicts against the device's learned normal, and its next state."""
    before = state if state is not None else BaselineState.empty()
    x = feature_row(features)[None, :]
    at = np.array([float(features.collected_at_ms)])
    step = _advance(before.table[None, :, :], x, at, settings, _columns(settings))
    verdicts = _verdicts_of(step, 0, before.table, x[0], features.collected_at_ms, settings)
    return verdicts, BaselineState(before.reports + 1, _frozen(step.tables[0]))


def update_baseline_rows(
    tables: FloatArray, reports: npt.NDArray[np.int64], rows: npt.NDArray[np.intp],
    x: FloatArray, collected_at_ms: npt.NDArray[np.int64], settings: BaselineSettings,
) -> list[tuple[int, Verdict]]:
    """The vectorised path: devices ``rows`` of an in-memory bank (``tables`` (D, ROWS, F),
    ``reports`` (D,), made by :func:`new_table`) judge and learn ``x`` (one row each, NaN
    absent) in place. Each device appears at most once per call. Returns (index into
    ``rows``, verdict) for what was flagged."""
    if np.unique(rows).size != rows.size:
        raise ValueError("a device appears at most once in one vectorised update")
    before = tables[rows]
    step = _advance(before, x, collected_at_ms.astype(np.float64), settings, _columns(settings))
    tables[rows] = step.tables
    reports[rows] += 1
    found: list[tuple[int, Verdict]] = []
    for i in np.flatnonzero(step.flagged.any(axis=1)):
        found += [(int(i), v) for v in _verdicts_of(step, int(i), before[i], x[i],
                                                    int(collected_at_ms[i]), settings)]
    return found


def band(state: BaselineState | None, feature: Feature,
         settings: BaselineSettings | None = None) -> tuple[float, float] | None:
    """The feature's normal band (low never below 0), or None before it is warm."""
    settings = settings or BaselineSettings()
    if state is None:
        return None
    column = state.table[:, FEATURE_INDEX[feature]]
    if column[COUNT] < settings.warm_up_reports:
        return None
    mean = float(column[MEAN])
    width = max(float(column[SCALE]), settings.rel_floor * abs(mean),
                settings.floors.get(feature, 0.0))
    low = min(mean - settings.k * width, float(column[ACCEPT_LOW]))
    high = max(mean + settings.k * width, float(column[ACCEPT_HIGH]))
    return max(low, 0.0), high


def warm_up(state: BaselineState | None, settings: BaselineSettings | None = None) -> WarmUp:
    settings = settings or BaselineSettings()
    return WarmUp(state.reports if state is not None else 0, settings.warm_up_reports)


def accept_value(state: BaselineState, feature: Feature, observed: float,
                 margin: float = 0.5) -> BaselineState:
    """``state`` that accepts ``observed`` (and ``margin`` of its distance beyond it) for
    ``feature`` from now on: what an operator's "false positive" teaches (feedback)."""
    if not math.isfinite(observed):
        raise ValueError("an accepted value is a finite number")
    table = state.table.copy()
    c = FEATURE_INDEX[feature]
    mean = float(table[MEAN, c])
    edge = observed + margin * (observed - mean)
    if observed >= mean:
        table[ACCEPT_LOW, c] = min(float(table[ACCEPT_LOW, c]), mean)
        table[ACCEPT_HIGH, c] = max(float(table[ACCEPT_HIGH, c]), edge)
    else:
        table[ACCEPT_LOW, c] = min(float(table[ACCEPT_LOW, c]), edge)
        table[ACCEPT_HIGH, c] = max(float(table[ACCEPT_HIGH, c]), mean)
    table[STREAK, c] = 0.0
    return BaselineState(state.reports, _frozen(table))


__all__ = [
    "DEFAULT_FLOORS",
    "DEFAULT_FOR_REPORTS",
    "FEATURES",
    "FEATURE_FAMILY",
    "FEATURE_INDEX",
    "NOT_FLAGGED_ABOVE",
    "BaselineSettings",
    "BaselineState",
    "WarmUp",
    "accept_value",
    "band",
    "feature_matrix",
    "feature_row",
    "new_table",
    "update_baseline",
    "update_baseline_rows",
    "warm_up",
]
