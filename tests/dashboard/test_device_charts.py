"""The device page's charts: every stored metric, with axes, units, gaps and a normal band."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest

from fleetguard.core.clock import utcnow
from fleetguard.dashboard.charts import (
    PLOT_BOTTOM,
    PLOT_LEFT,
    PLOT_RIGHT,
    PLOT_TOP,
    BandPoint,
    MetricChart,
    chart_step,
    device_charts,
    format_value,
    metric_chart,
)
from fleetguard.dashboard.render import env
from fleetguard.protocol import InterfaceCounters
from fleetguard.store import Database
from fleetguard.telemetry import IngestService, Metric, Sample
from tests.telemetry.support import add_device, body, report

START = datetime(2026, 12, 1, 0, 0, tzinfo=UTC)
END = START + timedelta(hours=2)
STEP = timedelta(minutes=1)


def _minutes(*values: float | None) -> list[Sample]:
    """A sample per minute from START; None: no value that minute."""
    return [Sample(START + i * STEP, v) for i, v in enumerate(values) if v is not None]


def _points(svg_points: str) -> list[tuple[float, float]]:
    return [tuple(float(v) for v in pair.split(",")) for pair in svg_points.split()]  # type: ignore[misc]


def _chart(samples: list[Sample], **kwargs: object) -> MetricChart:
    chart = metric_chart(Metric.BYTES_OUT, samples, start=START, end=END, step=STEP, **kwargs)  # type: ignore[arg-type]
    assert chart is not None
    return chart


def _render(charts: list[MetricChart]) -> str:
    return env.get_template("_device_charts.html").render(device_charts=charts, charts=[], snapshot=None)


def test_a_band_given_is_drawn_behind_the_line_within_the_plot() -> None:
    band = [BandPoint(START + i * STEP, 100.0, 300.0) for i in range(0, 120, 10)]
    chart = _chart(_minutes(*[200.0] * 60, 900.0), band=band)
    assert chart.band is not None
    corners = _points(chart.band)
    assert len(corners) == 2 * len(band)
    assert all(PLOT_LEFT <= x <= PLOT_RIGHT and PLOT_TOP <= y <= PLOT_BOTTOM for x, y in corners)
    highs, lows = corners[: len(band)], corners[len(band):]
    assert all(h[1] < low[1] for h, low in zip(highs, reversed(lows), strict=True))  # high above low
    html = _render([chart])
    assert html.index('class="band"') < html.index('class="series"')  # drawn first: behind
    assert "shaded band is the device's normal range" in html


def test_without_a_band_none_is_drawn() -> None:
    chart = _chart(_minutes(1.0, 2.0))
    assert chart.band is None
    assert 'class="band"' not in _render([chart])


def test_a_band_widens_the_axis_to_show_itself() -> None:
    chart = _chart(_minutes(10.0, 12.0), band=[BandPoint(START, 0.0, 5000.0),
                                                  BandPoint(START + STEP, 0.0, 5000.0)])
    assert float(chart.y_ticks[-1].label.rstrip("k")) * 1000 >= 5000


def test_a_step_without_a_value_breaks_the_line() -> None:
    chart = _chart(_minutes(5.0, 6.0, 7.0, None, None, 8.0, 9.0, None, 4.0))
    assert len(chart.segments) == 2 and chart.gaps == 2
    assert [len(_points(s)) for s in chart.segments] == [3, 2]
    assert len(chart.dots) == 1  # the lone last point is still shown
    assert chart.points == 6


def test_the_value_axis_is_labelled_from_zero_past_the_peak_in_round_steps() -> None:
    chart = _chart(_minutes(1_200.0, 48_000.0, 3_000.0))
    labels = [t.label for t in chart.y_ticks]
    assert labels[0] == "0" and labels == ["0", "20k", "40k", "60k"]
    ys = [t.position for t in chart.y_ticks]
    assert ys == sorted(ys, reverse=True) and ys[0] == PLOT_BOTTOM and ys[-1] == PLOT_TOP
    assert chart.unit == "bytes/s" and chart.latest == "3k bytes/s" and chart.peak == "48k bytes/s"


def test_time_labels_are_round_utc_times_across_the_range() -> None:
    chart = _chart(_minutes(1.0, 2.0))
    assert [t.label for t in chart.x_ticks] == ["00:00", "00:30", "01:00", "01:30", "02:00"]
    xs = [t.position for t in chart.x_ticks]
    assert xs[0] == PLOT_LEFT and xs[-1] == PLOT_RIGHT and xs == sorted(xs)


def test_values_are_written_short_with_their_magnitude() -> None:
    assert [format_value(v) for v in (0, 0.0167, 12.5, 999, 1_500, 2.5e6, 7e9)] == [
        "0", "0.0167", "12.5", "999", "1.5k", "2.5M", "7G"]


def test_a_charts_step_is_never_shorter_than_one_and_a_half_reports() -> None:
    assert chart_step(timedelta(hours=24), timedelta(minutes=5)) == timedelta(minutes=7, seconds=30)
    assert chart_step(timedelta(hours=24), timedelta(seconds=10)) == timedelta(minutes=6)
    assert chart_step(timedelta(minutes=10), None) == timedelta(seconds=3)


def test_the_rendered_chart_names_its_unit_axis_values_and_times() -> None:
    html = _render([_chart(_minutes(1_200.0, 48_000.0))])
    assert re.search(r'<text class="unit"[^>]*>bytes/s</text>', html)
    assert [m for m in re.findall(r'<text class="y-tick"[^>]*>([^<]+)</text>', html)] == ["0", "20k", "40k", "60k"]
    assert "00:30" in re.findall(r'<text class="x-tick"[^>]*>([^<]+)</text>', html)
    assert "in bytes/s" in html and "Times in UTC" in html


# -- from stored telemetry (SQLite and PostgreSQL) -------------------------------------------


def _ifaces(n: int) -> list[InterfaceCounters]:
    return [InterfaceCounters(name="eth0", bytes_in=6000 * n, bytes_out=600 * n, packets_in=n, packets_out=n)]


def _store(db: Database, device: str, reports: list[object]) -> None:
    with IngestService(db, sweep_every_s=None, compact_every_s=None, linger_s=0.01) as ingest:
        for message in reports:
            ingest.submit_telemetry(device, body(message), "application/cbor")  # type: ignore[arg-type]
        assert ingest.flush()


def test_every_stored_metric_gets_a_chart_in_metric_order(db: Database) -> None:
    device = add_device(db)
    start = utcnow() - timedelta(minutes=30)
    _store(db, device, [report(seq, start + seq * timedelta(minutes=1), interfaces=_ifaces(seq))
                        for seq in range(1, 11)])
    with db.session() as session:
        charts = device_charts(session, device, end=utcnow())
    assert [c.metric for c in charts] == list(Metric)  # the sample report carries them all
    bytes_in = next(c for c in charts if c.metric is Metric.BYTES_IN)
    # 6000 bytes a minute; the first report's total since boot is no rate, so no spike
    assert bytes_in.unit == "bytes/s" and bytes_in.peak == "100 bytes/s"


def test_silence_and_absent_rates_are_gaps_in_stored_series(db: Database) -> None:
    device = add_device(db)
    start = utcnow() - timedelta(hours=2)
    minute = timedelta(minutes=1)
    sent = [report(seq, start + seq * minute, interfaces=_ifaces(seq)) for seq in range(1, 11)]
    # silent for half an hour; then three reports without kernel counters amid others
    sent += [report(seq, start + (30 + seq) * minute, interfaces=_ifaces(seq),
                    net=None if 14 <= seq <= 16 else report(1).net) for seq in range(11, 21)]
    _store(db, device, sent)
    with db.session() as session:
        charts = {c.metric: c for c in device_charts(session, device, end=utcnow(),
                                                     window=timedelta(hours=3))}
    assert charts[Metric.CPU_PERCENT].gaps == 1  # the silence
    assert charts[Metric.TCP_ATTEMPTS].gaps == 2  # the silence, and the reports without net
    html = _render(list(charts.values()))
    assert html.count('<div class="metric-chart"') == len(charts)


def test_a_device_that_never_reported_has_no_charts(db: Database) -> None:
    device = add_device(db)
    with db.session() as session:
        assert device_charts(session, device, end=utcnow()) == []


@pytest.mark.parametrize("value", [0.0, 5.0])
def test_a_flat_series_still_has_a_labelled_axis(value: float) -> None:
    chart = _chart(_minutes(value, value, value))
    assert len(chart.y_ticks) >= 2 and chart.y_ticks[0].label == "0"
