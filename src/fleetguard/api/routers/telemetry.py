"""Stored device telemetry, for operators: which metrics a device has, and series of them."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Depends, Query
from pydantic import AwareDatetime

from fleetguard.api.authz import requires
from fleetguard.api.context import AppContext, get_context
from fleetguard.api.schemas_telemetry import (
    DeviceTelemetryOut,
    MetricOut,
    SeriesOut,
)
from fleetguard.core.clock import utcnow
from fleetguard.operators import Permission, Principal
from fleetguard.telemetry import (
    MAX_SERIES_POINTS,
    Aggregation,
    SeriesQuery,
    aggregate_series,
    default_series_start,
    metric_named,
    metric_summaries,
)

router = APIRouter(prefix="/api/v1", tags=["telemetry"])
Ctx = Annotated[AppContext, Depends(get_context)]
Reader = Annotated[Principal, Depends(requires(Permission.DEVICES_READ))]
MAX_STEP_S = 366 * 86_400


@router.get("/devices/{device_id}/telemetry", summary="The metrics stored for a device")
def device_telemetry(device_id: str, ctx: Ctx, _: Reader) -> DeviceTelemetryOut:
    """Each metric with samples stored for the device: its unit and kind, how many
    samples, the time range they cover and the newest value. Empty for a registered device
    that never reported; 404 for a device the registry does not hold."""
    with ctx.db.session() as session:
        summaries = metric_summaries(session, device_id)
    return DeviceTelemetryOut(device_id=device_id,
                              metrics=[MetricOut.of_summary(s) for s in summaries])


SERIES_DOC = f"""The samples of `metric` in `[start, end)` cut into steps of `step` seconds
from `start`, each step with samples giving one point: their avg, min, max, sum, count, or
the last of them. The answer states the metric's `unit` and `kind`.

Counters are stored as rates per second (`kind` `rate`: `bytes/s`, `packets/s`,
`connections/s`...), each over the gap to the device's previous report of the same boot;
avg, min and max of a step are of those rates. A report that is a new baseline (a device's
first, a reboot, a clock set back, a late one) has no rate: a step holding only such
reports has no point, a gap in the series, never a zero.

At most {MAX_SERIES_POINTS} steps: a longer range needs a longer step (the 422 says how many
the range holds). Samples older than raw retention (7 days by default) remain as hourly
rollups, which count in the step holding their hour's start. 404 for a device the registry
does not hold, or a metric that does not exist (`GET /api/v1/devices/{{device_id}}/telemetry`
lists a device's)."""


@router.get("/devices/{device_id}/telemetry/{metric}", summary="A metric of a device as a series",
            description=SERIES_DOC)
def metric_series(
    device_id: str,
    metric: str,
    ctx: Ctx,
    _: Reader,
    start: Annotated[AwareDatetime | None, Query(
        description="ISO 8601 with a zone; default: an hour before end")] = None,
    end: Annotated[AwareDatetime | None, Query(
        description="ISO 8601 with a zone, exclusive; default: now")] = None,
    step: Annotated[int, Query(ge=1, le=MAX_STEP_S, description="seconds per point")] = 60,
    agg: Annotated[Aggregation, Query(description="how a step's samples become its point")]
        = Aggregation.AVG,
) -> SeriesOut:
    until = end or utcnow()
    query = SeriesQuery(metric=metric_named(metric), start=start or default_series_start(until),
                        end=until, step=timedelta(seconds=step), aggregation=agg)
    with ctx.db.session() as session:
        points = aggregate_series(session, device_id, query)
    return SeriesOut.of(device_id, query, points)
