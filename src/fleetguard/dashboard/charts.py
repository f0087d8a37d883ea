"""Line charts of stored telemetry series, drawn server-side as SVG (no script).

``line_chart``: a bare line (the overview's fleet risk, an alarm's reports).
``device_charts`` / ``metric_chart``: a device's metrics, each with a value axis in its
unit, time labels (UTC), gaps where nothing was reported or a rate is absent (a new
baseline), and an optional normal band (low and high over time) behind the line.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy.orm import Session

from fleetguard import telemetry
from fleetguard.telemetry import METRIC_INFO, Metric, MetricKind, Sample

WIDTH, HEIGHT, PAD = 560, 120, 4
MAX_POINTS = 240


@dataclass(frozen=True, slots=True)
class Chart:
    title: str
    unit: str
    points: str  # SVG polyline points
    samples: int
    minimum: float
    maximum: float
    latest: float
    first_at: datetime
    last_at: datetime
    width: int = WIDTH
    height: int = HEIGHT


def _bucket(samples: list[Sample]) -> list[Sample]:
    """At most MAX_POINTS points: the maximum of each bucket, so spikes stay visible."""
    if len(samples) <= MAX_POINTS:
        return samples
    size = -(-len(samples) // MAX_POINTS)
    out = []
    for i in range(0, len(samples), size):
        chunk = samples[i:i + size]
        top = max(chunk, key=lambda s: s.value)
        out.append(Sample(at=chunk[-1].at, value=top.value))
    return out


def line_chart(
    title: str, unit: str, samples: list[Sample], *, ceiling: float | None = None
) -> Chart | None:
    """The series as an SVG polyline, scaled from 0 (or below) to its maximum, or to
    ``ceiling`` for a bounded figure (a 0-100 score)."""
    if not samples:
        return None
    shown = _bucket(samples)
    t0 = shown[0].at.timestamp()
    span = max(shown[-1].at.timestamp() - t0, 1.0)
    lo = min(0.0, min(s.value for s in shown))
    hi = max(s.value for s in shown) if ceiling is None else ceiling
    rng = (hi - lo) or 1.0
    pts = []
    for s in shown:
        x = PAD + (s.at.timestamp() - t0) / span * (WIDTH - 2 * PAD)
        y = HEIGHT - PAD - (s.value - lo) / rng * (HEIGHT - 2 * PAD)
        pts.append(f"{x:.1f},{y:.1f}")
    if len(pts) == 1:
        pts.append(f"{WIDTH - PAD:.1f},{pts[0].split(',')[1]}")
    return Chart(
        title=title, unit=unit, points=" ".join(pts), samples=len(samples),
        minimum=min(s.value for s in samples), maximum=max(s.value for s in samples),
        latest=samples[-1].value, first_at=samples[0].at, last_at=samples[-1].at,
    )


# -- a metric with axes, units, gaps and a normal band ---------------------------------------

CHART_W, CHART_H = 400, 170
PLOT_LEFT, PLOT_RIGHT, PLOT_TOP, PLOT_BOTTOM = 50, 392, 8, 146  # the plot area, in the viewBox
MAX_STEPS = 240  # points per chart at most: the range is cut into steps this many or fewer
_NICE = (1.0, 2.0, 2.5, 5.0)
_TIME_STEPS_S = (60, 300, 900, 1800, 3600, 2 * 3600, 3 * 3600, 6 * 3600, 12 * 3600, 86_400,
                 2 * 86_400, 7 * 86_400)
_SI = ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k"))


@dataclass(frozen=True, slots=True)
class BandPoint:
    """The normal range of a metric at one time: drawn as a band behind its line."""

    at: datetime
    low: float
    high: float


@dataclass(frozen=True, slots=True)
class Tick:
    position: float  # x or y in the viewBox
    label: str


@dataclass(frozen=True, slots=True)
class MetricChart:
    """One metric of a device drawn with its axes: everything the template places."""

    metric: Metric
    title: str
    unit: str
    kind: MetricKind
    segments: tuple[str, ...]  # SVG polyline points, one per run of points without a gap
    dots: tuple[tuple[float, float], ...]  # a point with a gap on both sides
    band: str | None  # SVG polygon points of the normal band, or None
    y_ticks: tuple[Tick, ...]
    x_ticks: tuple[Tick, ...]
    gaps: int  # breaks in the line: steps with no value between two that have one
    points: int
    latest: str  # formatted, with the unit
    peak: str
    step_s: int  # each point is the maximum of a step this long
    start: datetime
    end: datetime
    width: int = CHART_W
    height: int = CHART_H
    left: int = PLOT_LEFT
    right: int = PLOT_RIGHT
    top: int = PLOT_TOP
    bottom: int = PLOT_BOTTOM


def format_value(value: float) -> str:
    """A value as an axis or caption says it: three significant digits, k/M/G/T above 1,000."""
    for size, suffix in _SI:
        if abs(value) >= size:
            return f"{value / size:.3g}{suffix}"
    return f"{value:.3g}"


def _nice_ceiling(top: float, ticks: int = 4) -> float:
    """The tick spacing (1, 2, 2.5 or 5 times a power of ten) giving at most ``ticks``
    intervals up to ``top``."""
    raw = top / ticks
    power = 10.0 ** math.floor(math.log10(raw))
    return next((n * power for n in _NICE if n * power >= raw), 10 * power)


def _value_ticks(low: float, high: float) -> tuple[float, float, list[float]]:
    """The axis range (from 0, or below it for negative values) and its tick values."""
    low = min(low, 0.0)
    if high <= low:
        high = low + 1.0
    spacing = _nice_ceiling(high - low)
    first = math.floor(low / spacing) * spacing
    last = math.ceil(high / spacing) * spacing
    count = round((last - first) / spacing)
    return first, last, [first + i * spacing for i in range(count + 1)]


def _time_ticks(start: datetime, end: datetime) -> list[tuple[datetime, str]]:
    """Round UTC times at an interval giving at most five labels; dates when it spans days."""
    span = (end - start).total_seconds()
    every = next((s for s in _TIME_STEPS_S if span / s <= 5), _TIME_STEPS_S[-1])
    epoch = start.timestamp()
    first = math.ceil(epoch / every) * every
    out = []
    for at_s in range(int(first), int(end.timestamp()) + 1, every):
        at = datetime.fromtimestamp(at_s, tz=UTC)
        label = at.strftime("%d %b" if every >= 86_400 else "%H:%M")
        out.append((at, label))
    return out


def metric_chart(
    metric: Metric, samples: Sequence[Sample], *, start: datetime, end: datetime,
    step: timedelta, band: Sequence[BandPoint] = (),
) -> MetricChart | None:
    """``samples`` (one per step that has a value, at the step's start, as
    :func:`fleetguard.telemetry.step_maxima` gives them) drawn over ``[start, end)``; a
    step without a value breaks the line. ``band``: the metric's normal range over time
    (say, a learned baseline's low and high), drawn behind the line; its points in the
    range are joined in time order. None without samples."""
    if not samples:
        return None
    info = METRIC_INFO[metric]
    shown_band = [b for b in band if start <= b.at < end]
    values = [s.value for s in samples]
    lows = [*values, *(b.low for b in shown_band)]
    highs = [*values, *(b.high for b in shown_band)]
    y_low, y_high, y_values = _value_ticks(min(lows), max(highs))
    t0, span = start.timestamp(), max((end - start).total_seconds(), 1.0)

    def x_of(at: datetime) -> float:
        return PLOT_LEFT + (at.timestamp() - t0) / span * (PLOT_RIGHT - PLOT_LEFT)

    def y_of(value: float) -> float:
        return PLOT_BOTTOM - (value - y_low) / (y_high - y_low) * (PLOT_BOTTOM - PLOT_TOP)

    step_s = step.total_seconds()
    runs: list[list[Sample]] = []
    for sample in samples:
        index = round((sample.at.timestamp() - t0) / step_s)
        if runs and round((runs[-1][-1].at.timestamp() - t0) / step_s) == index - 1:
            runs[-1].append(sample)
        else:
            runs.append([sample])
    half = (PLOT_RIGHT - PLOT_LEFT) * step_s / span / 2  # a point sits mid-step
    segments = tuple(" ".join(f"{x_of(s.at) + half:.1f},{y_of(s.value):.1f}" for s in run)
                     for run in runs if len(run) > 1)
    dots = tuple((round(x_of(run[0].at) + half, 1), round(y_of(run[0].value), 1))
                 for run in runs if len(run) == 1)
    polygon = None
    if shown_band:
        ordered = sorted(shown_band, key=lambda b: b.at)
        edge = [f"{x_of(b.at):.1f},{y_of(b.high):.1f}" for b in ordered]
        edge += [f"{x_of(b.at):.1f},{y_of(b.low):.1f}" for b in reversed(ordered)]
        polygon = " ".join(edge)
    unit = info.unit.value
    return MetricChart(
        metric=metric, title=info.label, unit=unit, kind=info.kind, segments=segments,
        dots=dots, band=polygon,
        y_ticks=tuple(Tick(round(y_of(v), 1), format_value(v)) for v in y_values),
        x_ticks=tuple(Tick(round(x_of(at), 1), label)
                      for at, label in _time_ticks(start, end)),
        gaps=len(runs) - 1, points=len(samples),
        latest=f"{format_value(values[-1])} {unit}", peak=f"{format_value(max(values))} {unit}",
        step_s=int(step_s), start=start, end=end,
    )


def chart_step(window: timedelta, interval: timedelta | None) -> timedelta:
    """The step of a device's charts: at most MAX_STEPS over the window, and at least one
    and a half reporting intervals, so that a step without a value is a real gap (the
    device silent, or its rates absent), not a step that fell between two reports."""
    step_s = window.total_seconds() / MAX_STEPS
    if interval is not None:
        step_s = max(step_s, 1.5 * interval.total_seconds())
    return timedelta(seconds=max(1, math.ceil(step_s)))


def device_charts(
    session: Session, device_id: str, *, end: datetime, window: timedelta = timedelta(hours=24),
    bands: Mapping[Metric, Sequence[BandPoint]] | None = None,
) -> list[MetricChart]:
    """A chart of every metric the device has samples of in the window before ``end``, in
    :class:`Metric` order, with the normal band of ``bands`` behind each line it names."""
    status = telemetry.device_status(session, device_id)
    if status is None:
        return []
    step = chart_step(window, status.interval)
    start = end - window
    series = telemetry.step_maxima(session, device_id, start=start, end=end, step=step)
    out = []
    for metric, samples in series.items():
        chart = metric_chart(metric, samples, start=start, end=end, step=step,
                             band=(bands or {}).get(metric, ()))
        if chart is not None:
            out.append(chart)
    return out
