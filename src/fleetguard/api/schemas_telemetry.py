"""Response models of the telemetry read routes."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field

from fleetguard.telemetry import (
    METRIC_INFO,
    Aggregation,
    MetricKind,
    MetricSummary,
    MetricUnit,
    Sample,
    SeriesQuery,
)

UNIT_DOC = ("the unit of the values: `%`, `count`, `tasks` (load average), `s`, or a rate per "
            "second: `bytes/s`, `packets/s`, `connections/s`, `segments/s`, `resets/s`, "
            "`datagrams/s`")
KIND_DOC = ("`gauge`: a level at collection time; `rate`: per second over the gap to the "
            "previous report of the same boot, absent on a new baseline (a device's first "
            "report, a reboot, a clock set back, a late report) and for a counter that went "
            "down; `per_report`: a count over the report's own period")


class PointOut(BaseModel):
    at: datetime = Field(description="UTC: when the sample was collected; in a series, the "
                                     "start of the step the point aggregates")
    value: float


class MetricInfoOut(BaseModel):
    """A metric: its name, unit and kind."""

    metric: str = Field(description="the metric's name, as the series route takes it")
    unit: MetricUnit = Field(description=UNIT_DOC)
    kind: MetricKind = Field(description=KIND_DOC)
    label: str = Field(description="a short human name, as the dashboard's charts say it")


class MetricOut(MetricInfoOut):
    samples: int = Field(description="samples stored, counting those hourly rollups stand for")
    first_at: datetime = Field(description="the oldest sample stored (or its rollup's hour)")
    last_at: datetime = Field(description="the newest sample stored")
    latest: PointOut | None = Field(
        description="the newest raw sample; null when only hourly rollups remain")

    @classmethod
    def of_summary(cls, summary: MetricSummary) -> MetricOut:
        latest = summary.latest
        info = METRIC_INFO[summary.metric]
        return cls(metric=summary.metric.value, unit=info.unit, kind=info.kind,
                   label=info.label, samples=summary.samples,
                   first_at=summary.first_at, last_at=summary.last_at,
                   latest=PointOut(at=latest.at, value=latest.value) if latest else None)


class DeviceTelemetryOut(BaseModel):
    """The metrics stored for a device; empty for a device that never reported."""

    device_id: str
    metrics: list[MetricOut]


class SeriesOut(BaseModel):
    """One metric over ``[start, end)``, one point per step that holds samples."""

    device_id: str
    metric: str
    unit: MetricUnit = Field(description=UNIT_DOC)
    kind: MetricKind = Field(description=KIND_DOC)
    start: datetime
    end: datetime
    step_s: int = Field(description="the step, in seconds; points are at start + k * step")
    agg: Aggregation
    points: list[PointOut] = Field(description="oldest first; a step without samples has none")

    @classmethod
    def of(cls, device_id: str, query: SeriesQuery, points: list[Sample]) -> SeriesOut:
        info = METRIC_INFO[query.metric]
        return cls(device_id=device_id, metric=query.metric.value, unit=info.unit,
                   kind=info.kind, start=query.start,
                   end=query.end, step_s=int(query.step.total_seconds()),
                   agg=query.aggregation,
                   points=[PointOut(at=p.at, value=p.value) for p in points])
