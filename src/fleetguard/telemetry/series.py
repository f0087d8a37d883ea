"""Stored telemetry as an operator reads it: which metrics a device has, and one metric as
a series of points over a range, one per step, each an aggregate of the step's samples.

Raw reports are kept for the retention's ``raw`` period, then only hourly rollups (count,
min, max, avg). A series draws on both: a rollup counts in the step holding its hour's
start, with its count, min, max and sum (avg times count); so where only rollups remain,
steps shorter than an hour see the hour's samples at its start, and ``last`` is the last
hour's average. The aggregation is done by the database, one row per step.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, func, select
from sqlalchemy.orm import Session

from fleetguard.core.errors import ValidationFailedError
from fleetguard.protocol import from_millis, to_millis
from fleetguard.registry import service as registry
from fleetguard.registry.errors import DeviceNotFoundError
from fleetguard.store.tables.telemetry import TelemetryReportRow, TelemetryRollupRow
from fleetguard.telemetry._ids import canonical_device_id
from fleetguard.telemetry._store import METRIC_COLUMNS
from fleetguard.telemetry.errors import MetricNotFoundError
from fleetguard.telemetry.models import (
    METRIC_IDS,
    Aggregation,
    Metric,
    MetricSummary,
    Sample,
    SeriesQuery,
)
from fleetguard.telemetry.queries import telemetry_key

#: The most points one series answers (Prometheus answers at most 11,000): a longer range
#: needs a longer step.
MAX_SERIES_POINTS = 10_000
DEFAULT_SERIES_RANGE = timedelta(hours=1)
_EPOCH = from_millis(0)  # telemetry times are milliseconds since; nothing is stored before
_METRIC_OF_ID = {number: metric for metric, number in METRIC_IDS.items()}


def metric_named(name: str) -> Metric:
    """The metric of this wire name. Raises MetricNotFoundError, listing the names."""
    try:
        return Metric(name)
    except ValueError:
        raise MetricNotFoundError(
            f"no metric {name[:64]!r}; metrics are {', '.join(m.value for m in Metric)}"
        ) from None


def _device_key(session: Session, device_id: str) -> int | None:
    """The device's telemetry key (None: registered, never reported). Raises
    DeviceNotFoundError when the registry does not hold the device."""
    try:
        canonical = canonical_device_id(device_id)
    except ValueError:
        raise DeviceNotFoundError(f"no device {device_id[:64]!r}") from None
    if not registry.registered_device_ids(session, [canonical]):
        raise DeviceNotFoundError(f"no device {canonical}")
    return telemetry_key(session, canonical)


def metric_summaries(session: Session, device_id: str) -> list[MetricSummary]:
    """The metrics stored for a registered device (an empty list if it never reported),
    in :class:`Metric` order. Raises DeviceNotFoundError for a device not registered."""
    key = _device_key(session, device_id)
    if key is None:
        return []
    rolled = _rollup_spans(session, key)
    out = []
    for metric in Metric:
        summary = _summary(session, key, metric, rolled.get(metric))
        if summary is not None:
            out.append(summary)
    return out


@dataclass(frozen=True, slots=True)
class _Span:
    samples: int
    first_ms: int
    last_ms: int


def _rollup_spans(session: Session, key: int) -> dict[Metric, _Span]:
    u = TelemetryRollupRow
    rows = session.execute(
        select(u.metric, func.sum(u.samples), func.min(u.hour_ms), func.max(u.hour_ms))
        .where(u.device_key == key).group_by(u.metric)
    )
    return {_METRIC_OF_ID[m]: _Span(int(n), int(first), int(last))
            for m, n, first, last in rows if m in _METRIC_OF_ID}


def _summary(
    session: Session, key: int, metric: Metric, rolled: _Span | None
) -> MetricSummary | None:
    r, column = TelemetryReportRow, METRIC_COLUMNS[metric]
    mine = (r.device_key == key, column.is_not(None))
    samples, first_ms = session.execute(
        select(func.count(column), func.min(r.ts)).where(*mine)).one()
    latest = session.execute(
        select(r.ts, column).where(*mine).order_by(r.ts.desc(), r.seq.desc()).limit(1)
    ).first()
    if rolled is None and latest is None:
        return None
    spans = [s for s in (rolled, _Span(samples, first_ms, latest[0]) if latest else None) if s]
    return MetricSummary(
        metric=metric, samples=sum(s.samples for s in spans),
        first_at=from_millis(min(s.first_ms for s in spans)),
        last_at=from_millis(max(s.last_ms for s in spans)),
        latest=Sample(from_millis(latest[0]), float(latest[1])) if latest else None,
    )


@dataclass(slots=True)
class _Step:
    """What one step holds so far: enough to answer every aggregation."""

    count: int
    total: float
    low: float
    high: float
    last_ms: int
    last: float

    def merge(self, other: _Step) -> None:
        self.count += other.count
        self.total += other.total
        self.low = min(self.low, other.low)
        self.high = max(self.high, other.high)
        if other.last_ms >= self.last_ms:
            self.last_ms, self.last = other.last_ms, other.last

    def value(self, aggregation: Aggregation) -> float:
        match aggregation:
            case Aggregation.AVG:
                return self.total / self.count
            case Aggregation.MIN:
                return self.low
            case Aggregation.MAX:
                return self.high
            case Aggregation.LAST:
                return self.last
            case Aggregation.SUM:
                return self.total
            case Aggregation.COUNT:
                return float(self.count)


def default_series_start(end: datetime) -> datetime:
    """The hour before ``end``, never before the epoch: a range ending in the calendar's
    first hour has no hour before it (and nothing stored in it)."""
    if end - _EPOCH <= DEFAULT_SERIES_RANGE:
        return _EPOCH
    return end - DEFAULT_SERIES_RANGE


def check_series_query(query: SeriesQuery) -> int:
    """How many steps the query's range holds. Raises ValidationFailedError, saying what
    to change, for an empty range, a step under a second or over MAX_SERIES_POINTS steps."""
    if query.end <= query.start:
        raise ValidationFailedError("end must be after start", field="end")
    if query.step < timedelta(seconds=1):
        raise ValidationFailedError("step must be at least 1 second", field="step")
    steps = math.ceil((query.end - query.start) / query.step)
    if steps > MAX_SERIES_POINTS:
        raise ValidationFailedError(
            f"the range holds {steps} steps of {query.step.total_seconds():g} s; a series "
            f"has at most {MAX_SERIES_POINTS} points: take a longer step or a shorter range",
            field="step")
    return steps


def aggregate_series(session: Session, device_id: str, query: SeriesQuery) -> list[Sample]:
    """One point per step that holds samples, at the step's start, oldest first.

    Raises DeviceNotFoundError (not registered) and ValidationFailedError (see
    :func:`check_series_query`).
    """
    check_series_query(query)
    key = _device_key(session, device_id)
    if key is None:
        return []
    start_ms, end_ms = to_millis(query.start), to_millis(query.end)
    step_ms = int(query.step.total_seconds() * 1000)
    steps = _raw_steps(session, key, query, start_ms, end_ms, step_ms)
    for index, rolled in _rollup_steps(session, key, query.metric, start_ms, end_ms,
                                       step_ms).items():
        if index in steps:
            steps[index].merge(rolled)
        else:
            steps[index] = rolled
    return [Sample(from_millis(start_ms + index * step_ms), steps[index].value(query.aggregation))
            for index in sorted(steps)]


def _raw_steps(
    session: Session, key: int, query: SeriesQuery, start_ms: int, end_ms: int, step_ms: int,
) -> dict[int, _Step]:
    r, column = TelemetryReportRow, METRIC_COLUMNS[query.metric]
    index = ((r.ts - start_ms) // step_ms).label("step")
    mine = (r.device_key == key, r.ts >= start_ms, r.ts < end_ms, column.is_not(None))
    rows = session.execute(
        select(index, func.count(column), func.sum(column), func.min(column), func.max(column),
               func.max(r.ts))
        .where(*mine).group_by(index)
    ).all()
    lasts = _raw_lasts(session, column, mine, index) if query.aggregation is Aggregation.LAST \
        else {}
    return {int(i): _Step(int(n), float(total), float(low), float(high), int(last_ms),
                          lasts.get(int(i), math.nan))
            for i, n, total, low, high, last_ms in rows}


def _raw_lasts(
    session: Session, column: ColumnElement[float], mine: tuple[ColumnElement[bool], ...],
    index: ColumnElement[int],
) -> dict[int, float]:
    """The latest sample of every step (by time, then sequence): a window over the range."""
    r = TelemetryReportRow
    rank = func.row_number().over(partition_by=index, order_by=(r.ts.desc(), r.seq.desc()))
    ranked = select(index, column.label("value"), rank.label("rank")).where(*mine).subquery()
    rows = session.execute(select(ranked.c.step, ranked.c.value).where(ranked.c.rank == 1))
    return {int(i): float(v) for i, v in rows}


def _rollup_steps(
    session: Session, key: int, metric: Metric, start_ms: int, end_ms: int, step_ms: int,
) -> dict[int, _Step]:
    u = TelemetryRollupRow
    rows = session.execute(
        select(u.hour_ms, u.samples, u.min_value, u.max_value, u.avg_value)
        .where(u.device_key == key, u.metric == METRIC_IDS[metric], u.hour_ms >= start_ms,
               u.hour_ms < end_ms)
        .order_by(u.hour_ms)
    )
    out: dict[int, _Step] = {}
    for hour_ms, samples, low, high, avg in rows:
        rolled = _Step(samples, avg * samples, low, high, hour_ms, avg)
        index = (hour_ms - start_ms) // step_ms
        if index in out:
            out[index].merge(rolled)
        else:
            out[index] = rolled
    return out


def step_maxima(
    session: Session, device_id: str, *, start: datetime, end: datetime, step: timedelta,
) -> dict[Metric, list[Sample]]:
    """Every metric of a device over ``[start, end)``: the maximum of each step that holds
    samples (hourly rollups counting in the step of their hour's start), at the step's
    start, oldest first; a step without samples (nothing reported, or only new baselines of
    a rate) has no point. Metrics without any sample in the range are left out. One query
    over the raw reports for all metrics, one over the rollups. Raises as
    :func:`aggregate_series`."""
    check_series_query(SeriesQuery(Metric.CPU_PERCENT, start, end, step))
    key = _device_key(session, device_id)
    if key is None:
        return {}
    start_ms, end_ms = to_millis(start), to_millis(end)
    step_ms = int(step.total_seconds() * 1000)
    r = TelemetryReportRow
    index = ((r.ts - start_ms) // step_ms).label("step")
    metrics = list(Metric)
    rows = session.execute(
        select(index, *(func.max(METRIC_COLUMNS[m]) for m in metrics))
        .where(r.device_key == key, r.ts >= start_ms, r.ts < end_ms).group_by(index)
    )
    peaks: dict[Metric, dict[int, float]] = {m: {} for m in metrics}
    for i, *values in rows:
        for metric, value in zip(metrics, values, strict=True):
            if value is not None:
                peaks[metric][int(i)] = float(value)
    u = TelemetryRollupRow
    for metric_id, hour_ms, high in session.execute(
        select(u.metric, u.hour_ms, u.max_value)
        .where(u.device_key == key, u.hour_ms >= start_ms, u.hour_ms < end_ms)
    ):
        rolled = _METRIC_OF_ID.get(metric_id)
        if rolled is not None:
            i = (hour_ms - start_ms) // step_ms
            peaks[rolled][i] = max(peaks[rolled].get(i, high), high)
    return {
        metric: [Sample(from_millis(start_ms + i * step_ms), found[i]) for i in sorted(found)]
        for metric, found in peaks.items() if found
    }


__all__ = [
    "MAX_SERIES_POINTS",
    "aggregate_series",
    "check_series_query",
    "metric_named",
    "metric_summaries",
    "step_maxima",
]
