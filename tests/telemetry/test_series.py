"""Series of a stored metric for the API: steps, aggregations, ranges, rollups, summaries
(SQLite and PostgreSQL, whose integer division and window functions the steps rely on)."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from fleetguard.core.clock import utcnow
from fleetguard.core.errors import ValidationFailedError
from fleetguard.registry.errors import DeviceNotFoundError
from fleetguard.store import Database
from fleetguard.telemetry import (
    MAX_SERIES_POINTS,
    Aggregation,
    IngestService,
    Metric,
    SeriesQuery,
    aggregate_series,
    compact_telemetry,
    metric_summaries,
)
from tests.telemetry.support import add_device, body, report

MINUTE = timedelta(minutes=1)


def _ten_minutes(db: Database, ingest: IngestService) -> tuple[str, datetime]:
    """A device reporting cpu 10, 20, ... 100 at each minute of ten, from a whole hour."""
    device = add_device(db)
    base = (utcnow() - timedelta(hours=3)).replace(minute=0, second=0, microsecond=0)
    for i in range(10):
        message = report(i + 1, base + i * MINUTE, cpu_percent=10.0 * (i + 1))
        ingest.submit_telemetry(device, body(message), "application/cbor")
    assert ingest.flush()
    return device, base


def _series(db: Database, device: str, start: datetime, end: datetime, step: timedelta,
            agg: Aggregation = Aggregation.AVG) -> list[tuple[datetime, float]]:
    query = SeriesQuery(Metric.CPU_PERCENT, start, end, step, agg)
    with db.session() as session:
        return [(p.at, p.value) for p in aggregate_series(session, device, query)]


@pytest.mark.parametrize(("agg", "values"), [
    (Aggregation.AVG, [30.0, 80.0]), (Aggregation.MIN, [10.0, 60.0]),
    (Aggregation.MAX, [50.0, 100.0]), (Aggregation.SUM, [150.0, 400.0]),
    (Aggregation.COUNT, [5.0, 5.0]), (Aggregation.LAST, [50.0, 100.0]),
])
def test_each_aggregation_over_known_points(
    db: Database, ingest: IngestService, agg: Aggregation, values: list[float]
) -> None:
    device, base = _ten_minutes(db, ingest)
    points = _series(db, device, base, base + 10 * MINUTE, 5 * MINUTE, agg)
    assert points == [(base, values[0]), (base + 5 * MINUTE, values[1])]


def test_steps_are_cut_from_start_and_a_step_without_samples_has_no_point(
    db: Database, ingest: IngestService
) -> None:
    device, base = _ten_minutes(db, ingest)
    start = base - 2 * MINUTE
    points = _series(db, device, start, base + 30 * MINUTE, 4 * MINUTE, Aggregation.COUNT)
    assert points == [(start, 2.0), (start + 4 * MINUTE, 4.0), (start + 8 * MINUTE, 4.0)]


def test_the_range_takes_its_start_and_leaves_its_end_out(
    db: Database, ingest: IngestService
) -> None:
    device, base = _ten_minutes(db, ingest)
    points = _series(db, device, base + MINUTE, base + 3 * MINUTE, MINUTE)
    assert points == [(base + MINUTE, 20.0), (base + 2 * MINUTE, 30.0)]


def test_hours_rolled_up_past_raw_retention_still_answer(
    db: Database, ingest: IngestService
) -> None:
    device, base = _ten_minutes(db, ingest)
    with db.session() as session:
        compact_telemetry(session, utcnow() + timedelta(days=8))
    hour = timedelta(hours=1)
    answers = {agg: _series(db, device, base, base + hour, hour, agg) for agg in Aggregation}
    assert answers == {
        Aggregation.AVG: [(base, 55.0)], Aggregation.MIN: [(base, 10.0)],
        Aggregation.MAX: [(base, 100.0)], Aggregation.SUM: [(base, 550.0)],
        Aggregation.COUNT: [(base, 10.0)], Aggregation.LAST: [(base, 55.0)],
    }
    with db.session() as session:
        (cpu,) = [s for s in metric_summaries(session, device) if s.metric is Metric.CPU_PERCENT]
    assert (cpu.samples, cpu.first_at, cpu.last_at, cpu.latest) == (10, base, base, None)


def test_a_summary_names_each_stored_metric_with_its_range_and_latest_value(
    db: Database, ingest: IngestService
) -> None:
    device, base = _ten_minutes(db, ingest)
    with db.session() as session:
        summaries = {s.metric: s for s in metric_summaries(session, device)}
    cpu = summaries[Metric.CPU_PERCENT]
    assert (cpu.samples, cpu.first_at, cpu.last_at) == (10, base, base + 9 * MINUTE)
    assert cpu.latest is not None and (cpu.latest.at, cpu.latest.value) == (base + 9 * MINUTE, 100.0)
    assert all(s.samples > 0 for s in summaries.values())


def test_a_device_that_never_reported_has_no_metrics_and_an_unknown_one_is_not_found(
    db: Database,
) -> None:
    silent = add_device(db)
    now = utcnow()
    with db.session() as session:
        assert metric_summaries(session, silent) == []
        assert aggregate_series(session, silent, SeriesQuery(
            Metric.CPU_PERCENT, now - MINUTE, now, MINUTE)) == []
        for unknown in ("00000000-0000-4000-8000-000000000000", "not-a-device"):
            with pytest.raises(DeviceNotFoundError):
                metric_summaries(session, unknown)


@pytest.mark.parametrize(("start_after_end", "step", "field", "says"), [
    (timedelta(0), MINUTE, "end", "after start"),
    (-MINUTE, timedelta(milliseconds=500), "step", "at least 1 second"),
    (-timedelta(seconds=MAX_SERIES_POINTS + 1), timedelta(seconds=1), "step",
     f"{MAX_SERIES_POINTS + 1} steps"),
])
def test_an_empty_range_a_short_step_or_too_many_points_is_refused_saying_why(
    db: Database, start_after_end: timedelta, step: timedelta, field: str, says: str
) -> None:
    device, end = add_device(db), utcnow()
    query = SeriesQuery(Metric.CPU_PERCENT, end + start_after_end, end, step)
    with db.session() as session, pytest.raises(ValidationFailedError) as refused:
        aggregate_series(session, device, query)
    assert refused.value.field == field and says in refused.value.message
