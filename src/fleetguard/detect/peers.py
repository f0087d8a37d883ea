"""Peer comparison: a device against the others of its cohort in the same time window.

A *cohort* is the devices of one model in one group (the caller names it: any string).
:class:`PeerWindow` keeps, per cohort and per feature, the latest value of each device
within ``window_ms``; ``peer_verdicts`` judges a device's report by its robust z-score
against the cohort's median and MAD over that window::

    z = (x - median) / max(1.4826 * MAD, rel_floor * |median|, floor[f])

flagged when ``|z| > k`` and at least ``min_cohort`` devices have a value of the feature
in the window. Median and MAD ignore a minority of odd devices (up to half), so the
attacked device does not hide itself by moving the norm. This needs no history of the
device: a device that joins a cohort is judged from its first report (rates and CPU from its
second), which is what makes a small or new fleet useful from its first hour.

The window is a mutable, in-memory structure shared by the cohort's devices (not a
pure value: copying a cohort of 10,000 devices per report would be the cost); it is
deterministic (time comes from the reports, never a clock) and bounded: at most
``max_devices`` per cohort (the least recently reporting device is dropped first), one
value, a timestamp and a run length per feature each, ``24 * 24 = 576`` bytes per device plus
its id (884 bytes per device measured by ``benchmarks/bench_detect.py``).
The cohort's median and MAD are recomputed at most once per ``refresh_ms`` of report
time (and when the cohort's size changes), not per report: per report, judging is one
vectorised comparison (:func:`peer_verdicts_rows` for a batch).

Feedback: :class:`PeerExemptions` stops a feature of one device being judged against its
peers until a time (an operator's "false positive": that device is meant to differ).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Self

import numpy as np
import numpy.typing as npt

from fleetguard.detect.baselines import (
    DEFAULT_FLOORS,
    DEFAULT_FOR_REPORTS,
    FEATURE_INDEX,
    FEATURES,
    NOT_FLAGGED_ABOVE,
    Columns,
    FloatArray,
    column_median,
    columns,
    family_of,
    feature_row,
    learned_confidence,
    learned_severity,
)
from fleetguard.detect.features import Feature, FeatureVector
from fleetguard.detect.rules import Comparison, RuleKind, Verdict

MAD_TO_SIGMA = 1.4826  # MAD of a normal distribution times this is its sigma
MINUTE_MS = 60_000


@dataclass(frozen=True, slots=True)
class PeerSettings:
    window_ms: int = 15 * MINUTE_MS
    min_cohort: int = 5  # devices with a value of the feature in the window
    k: float = 6.0  # robust z beyond which a value is flagged
    # Devices of one model differ in load (a camera on a busy street, one in a quiet yard;
    # one in a diurnal place beside one that is not): a peer is odd at several times the
    # cohort's median, not at +60 %.
    rel_floor: float = 0.5
    refresh_ms: int = MINUTE_MS
    max_devices: int = 100_000  # per cohort
    flag_below: bool = True
    floors: Mapping[Feature, float] = field(default_factory=lambda: DEFAULT_FLOORS)
    # Consecutive reports of a device beyond its peers before a verdict (CPU: two).
    for_reports_by_feature: Mapping[Feature, int] = field(
        default_factory=lambda: DEFAULT_FOR_REPORTS)
    not_flagged_above: frozenset[Feature] = NOT_FLAGGED_ABOVE  # inbound: downloads

    def __deepcopy__(self, memo: dict[int, object]) -> Self:
        return self  # immutable (its floors a read-only mapping): a copy may share it

    def __post_init__(self) -> None:
        if self.min_cohort < 3:
            raise ValueError("a cohort needs at least 3 devices to have a robust median")
        if self.window_ms <= 0 or self.refresh_ms < 0 or self.max_devices < 1 or self.k <= 0:
            raise ValueError("window_ms, max_devices and k must be positive")


@dataclass(frozen=True, slots=True)
class PeerExemptions:
    """(device id, feature) -> until when (ms) the device's feature is not judged."""

    until_ms: Mapping[tuple[str, Feature], int] = field(
        default_factory=lambda: MappingProxyType({}))

    def exempt(self, device_id: str, feature: Feature, at_ms: int) -> bool:
        until = self.until_ms.get((device_id, feature))
        return until is not None and at_ms < until

    def with_exemption(self, device_id: str, feature: Feature, until_ms: int,
                       now_ms: int) -> PeerExemptions:
        """These exemptions and one more; expired ones are dropped (the set stays small)."""
        kept = {key: until for key, until in self.until_ms.items() if until > now_ms}
        kept[(device_id, feature)] = max(until_ms, kept.get((device_id, feature), until_ms))
        return PeerExemptions(MappingProxyType(kept))


@dataclass(slots=True)
class CohortStats:
    """The cohort's median, robust width and number of devices per feature."""

    median: FloatArray
    width: FloatArray
    count: npt.NDArray[np.int64]
    computed_at_ms: int
    devices: int


@dataclass(slots=True)
class _Cohort:
    values: FloatArray  # (capacity, F)
    at_ms: FloatArray  # (capacity, F): when each value was reported
    streak: FloatArray  # (capacity, F): consecutive reports judged beyond the peers
    rows: dict[str, int] = field(default_factory=dict)  # device id -> row, oldest first
    stats: CohortStats | None = None

    @classmethod
    def empty(cls, capacity: int) -> _Cohort:
        shape = (capacity, len(FEATURES))
        return cls(np.full(shape, np.nan), np.full(shape, -np.inf), np.zeros(shape))

    def row_of(self, device_id: str, max_devices: int) -> int:
        row = self.rows.pop(device_id, None)
        if row is None:
            row = self._new_row(max_devices)
        self.rows[device_id] = row  # to the end: the most recently reporting
        return row

    def _new_row(self, max_devices: int) -> int:
        if len(self.rows) >= max_devices:
            oldest = next(iter(self.rows))
            row = self.rows.pop(oldest)
            self.values[row] = np.nan
            self.at_ms[row] = -np.inf
            self.streak[row] = 0.0
            return row
        if len(self.rows) >= self.values.shape[0]:
            grown = min(max(2 * self.values.shape[0], 8), max_devices)
            extra = grown - self.values.shape[0]
            self.values = np.vstack([self.values, np.full((extra, len(FEATURES)), np.nan)])
            self.at_ms = np.vstack([self.at_ms, np.full((extra, len(FEATURES)), -np.inf)])
            self.streak = np.vstack([self.streak, np.zeros((extra, len(FEATURES)))])
        return len(self.rows)

    def compute(self, now_ms: int, settings: PeerSettings, floors: FloatArray) -> CohortStats:
        size = max(self.rows.values(), default=-1) + 1
        values = self.values[:size]
        fresh = self.at_ms[:size] >= now_ms - settings.window_ms
        current = np.where(fresh, values, np.nan)
        median, count = column_median(current)
        mad, _ = column_median(np.abs(current - median[None, :]))
        width = np.maximum(np.maximum(np.nan_to_num(mad) * MAD_TO_SIGMA,
                                      settings.rel_floor * np.abs(np.nan_to_num(median))), floors)
        self.stats = CohortStats(median, width, count.astype(np.int64), now_ms, len(self.rows))
        return self.stats


class PeerWindow:
    """The latest value of each feature of each device within the window, per cohort."""

    def __init__(self, settings: PeerSettings | None = None) -> None:
        self.settings = s = settings or PeerSettings()
        self.columns: Columns = columns(s.floors, 1, s.for_reports_by_feature,
                                        s.not_flagged_above)
        self._cohorts: dict[str, _Cohort] = {}

    def cohort_size(self, cohort: str) -> int:
        found = self._cohorts.get(cohort)
        return len(found.rows) if found is not None else 0

    def latest(self, cohort: str, device_id: str) -> FloatArray | None:
        """The device's latest values (NaN: none yet), or None if it is not in the window."""
        group = self._cohorts.get(cohort)
        row = group.rows.get(device_id) if group is not None else None
        return group.values[row].copy() if group is not None and row is not None else None

    def observe(self, cohort: str, device_id: str, x: FloatArray, at_ms: int) -> None:
        """Record one device's values (NaN: absent, the older value stands)."""
        self.observe_rows(cohort, [device_id], x[None, :], at_ms)

    def observe_rows(self, cohort: str, device_ids: Sequence[str], x: FloatArray,
                     at_ms: int) -> None:
        """Record many devices' values at once (each device at most once)."""
        group = self._cohorts.get(cohort)
        if group is None:
            group = self._cohorts[cohort] = _Cohort.empty(8)
        rows = np.fromiter((group.row_of(d, self.settings.max_devices) for d in device_ids),
                           np.intp, len(device_ids))
        before_values, before_at = group.values[rows], group.at_ms[rows]
        newer = ~np.isnan(x) & (at_ms >= before_at)  # a late report does not win
        group.values[rows] = np.where(newer, x, before_values)
        group.at_ms[rows] = np.where(newer, float(at_ms), before_at)

    def stats(self, cohort: str, now_ms: int) -> CohortStats | None:
        """The cohort's statistics as of ``now_ms`` (recomputed when stale)."""
        group = self._cohorts.get(cohort)
        if group is None:
            return None
        cached = group.stats
        if (cached is None or _grew(cached.devices, len(group.rows))
                or now_ms - cached.computed_at_ms >= self.settings.refresh_ms
                or now_ms < cached.computed_at_ms):
            cached = group.compute(now_ms, self.settings, self.columns.floors)
        return cached


def observe_peer_rows(window: PeerWindow, cohort: str, device_ids: Sequence[str],
                      x: FloatArray, at_ms: int) -> None:
    """The vectorised path: many devices of one cohort, one row of ``x`` each, reported
    at ``at_ms`` (a late row does not replace a newer value)."""
    window.observe_rows(cohort, device_ids, x, at_ms)


def _grew(before: int, now: int) -> bool:
    """A cohort changed enough to recompute: any change while small, else a tenth."""
    return before != now and (before < 64 or abs(now - before) * 10 > before)


def observe_peer(window: PeerWindow, cohort: str, device_id: str,
                 features: FeatureVector) -> None:
    """Put one report of a device into its cohort's window."""
    window.observe(cohort, device_id, feature_row(features), features.collected_at_ms)


def _peer_verdict(feature: Feature, observed: float, median: float, width: float,
                  count: int, at_ms: int, settings: PeerSettings) -> Verdict:
    half = settings.k * width
    low, high = max(median - half, 0.0), median + half
    above = observed > median
    family = family_of(feature, above)
    margin = abs(observed - median) / half
    confidence = learned_confidence(margin, count >= 2 * settings.min_cohort)
    where = "above" if above else "below"
    return Verdict(
        rule_id=f"peer.{feature.value}", kind=RuleKind.PEER, family=family,
        severity=learned_severity(confidence, family), collected_at_ms=at_ms,
        since_ms=at_ms, reports=1,
        summary=(f"{feature.value} {observed:g} {where} its {count} peers' normal "
                 f"{low:g}..{high:g} (median {median:g})"),
        description="unlike the other devices of its model and group right now",
        features=(feature,), observed=observed,
        comparison=Comparison.ABOVE if above else Comparison.BELOW,
        threshold=high if above else low, confidence=confidence,
        expected_low=low, expected_high=high)


def _beyond(stats: CohortStats, x: FloatArray, settings: PeerSettings, cols: Columns
            ) -> npt.NDArray[np.bool_]:
    """(B, F): which values lie beyond ``k`` robust widths of the cohort's median."""
    z = (x - stats.median[None, :]) / stats.width[None, :]
    with np.errstate(invalid="ignore"):
        beyond = ((z > settings.k) & cols.above) | ((z < -settings.k) & settings.flag_below)
    return beyond & (stats.count >= settings.min_cohort)[None, :] & ~np.isnan(x)


def _streaks(window: PeerWindow, cohort: str, device_ids: Sequence[str], x: FloatArray,
             beyond: npt.NDArray[np.bool_]) -> FloatArray:
    """Each device's run of reports beyond its peers, this one counted (kept for devices
    in the window; an absent value neither extends nor breaks a run)."""
    group = window._cohorts.get(cohort)
    rows = [group.rows.get(d) if group is not None else None for d in device_ids]
    known = np.array([r is not None for r in rows])
    index = np.array([r if r is not None else 0 for r in rows], np.intp)
    before = np.where(known[:, None], group.streak[index], 0.0) if group else np.zeros(x.shape)
    after = np.where(np.isnan(x), before, np.where(beyond, before + 1, 0.0))
    if group is not None and known.any():
        group.streak[index[known]] = after[known]
    return after


def peer_verdicts_rows(window: PeerWindow, cohort: str, device_ids: Sequence[str],
                       x: FloatArray, at_ms: int,
                       exemptions: PeerExemptions | None = None) -> list[tuple[int, Verdict]]:
    """The vectorised path: many devices of one cohort judged in one comparison.
    Returns (row of ``x``, verdict) for what was flagged."""
    settings = window.settings
    stats = window.stats(cohort, at_ms)
    if stats is None:
        return []
    beyond = _beyond(stats, x, settings, window.columns)
    flagged = beyond & (_streaks(window, cohort, device_ids, x, beyond)
                        >= window.columns.for_reports[None, :])
    found: list[tuple[int, Verdict]] = []
    for i, c in zip(*np.nonzero(flagged), strict=True):
        feature = FEATURES[c]
        if exemptions is not None and exemptions.exempt(device_ids[i], feature, at_ms):
            continue
        found.append((int(i), _peer_verdict(
            feature, float(x[i, c]), float(stats.median[c]), float(stats.width[c]),
            int(stats.count[c]), at_ms, settings)))
    return found


def peer_verdicts(window: PeerWindow, cohort: str, device_id: str, features: FeatureVector,
                  exemptions: PeerExemptions | None = None) -> list[Verdict]:
    """One report of a device judged against its cohort (observe it first, or not: the
    median ignores one device either way)."""
    x = feature_row(features)[None, :]
    return [v for _, v in peer_verdicts_rows(window, cohort, [device_id], x,
                                             features.collected_at_ms, exemptions)]


def peer_band(window: PeerWindow, cohort: str, feature: Feature,
              now_ms: int) -> tuple[float, float] | None:
    """The cohort's normal band of a feature now, or None below the minimum cohort."""
    stats = window.stats(cohort, now_ms)
    c = FEATURE_INDEX[feature]
    if stats is None or stats.count[c] < window.settings.min_cohort:
        return None
    median, half = float(stats.median[c]), window.settings.k * float(stats.width[c])
    if math.isnan(median):
        return None
    return max(median - half, 0.0), median + half


__all__ = [
    "CohortStats",
    "PeerExemptions",
    "PeerSettings",
    "PeerWindow",
    "observe_peer",
    "observe_peer_rows",
    "peer_band",
    "peer_verdicts",
    "peer_verdicts_rows",
]
