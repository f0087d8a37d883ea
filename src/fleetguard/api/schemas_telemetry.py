"""Response models of the telemetry read routes."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field

from fleetguard.telemetry import Aggregation, MetricSummary, Sample, SeriesQuery


class PointOut(BaseModel):
    at: datetime = Field(description="UTC: when the sample was collected; in a series, the "
                                     "start of the step the point aggregates")
    value: float


class MetricOut(BaseModel):
    metric: str = Field(description="the metric's name, as the series route takes it")
    samples: int = Field(description="samples stored, counting those hourly rollups stand for")
    first_at: datetime = Field(description="the oldest sample stored (or its rollup's hour)")
    last_at: datetime = Field(description="the newest sample stored")
    latest: PointOut | None = Field(
        description="the newest raw sample; null when only hourly rollups remain")

    @classmethod
    def of(cls, summary: MetricSummary) -> MetricOut:
        latest = summary.latest
        return cls(metric=summary.metric.value, samples=summary.samples,
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
    start: datetime
    end: datetime
    step_s: int = Field(description="the step, in seconds; points are at start + k * step")
    agg: Aggregation
    points: list[PointOut] = Field(description="oldest first; a step without samples has none")

    @classmethod
    def of(cls, device_id: str, query: SeriesQuery, points: list[Sample]) -> SeriesOut:
        return cls(device_id=device_id, metric=query.metric.value, start=query.start,
                   end=query.end, step_s=int(query.step.total_seconds()),
                   agg=query.aggregation,
                   points=[PointOut(at=p.at, value=p.value) for p in points])
