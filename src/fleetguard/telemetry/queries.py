"""Reading stored telemetry: raw series, hourly rollups, online state, latest snapshot,
refusal counts; and series for the API (:func:`metric_summaries`, :func:`aggregate_series`).
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from fleetguard.protocol import from_millis, to_millis
from fleetguard.store.tables.telemetry import (
    TelemetryDeviceRow,
    TelemetryRejectionRow,
    TelemetryReportRow,
    TelemetryRollupRow,
)
from fleetguard.telemetry._ids import canonical_device_id
from fleetguard.telemetry._store import METRIC_COLUMNS
from fleetguard.telemetry.models import (
    METRIC_IDS,
    DeviceTelemetryStatus,
    Metric,
    RollupPoint,
    Sample,
    Snapshot,
)


def telemetry_key(session: Session, device_id: str) -> int | None:
    """The device's key in the telemetry tables; None if it never reported."""
    try:
        canonical = canonical_device_id(device_id)
    except ValueError:
        return None
    key: int | None = session.execute(
        select(TelemetryDeviceRow.key).where(TelemetryDeviceRow.device_id == canonical)
    ).scalar_one_or_none()
    return key


def read_series(
    session: Session, device_id: str, metric: Metric, *,
    since: datetime, until: datetime | None = None,
) -> list[Sample]:
    """Raw samples of one metric, oldest first (reports where it was unknown are left out)."""
    key = telemetry_key(session, device_id)
    if key is None:
        return []
    column = METRIC_COLUMNS[Metric(metric)]
    r = TelemetryReportRow
    query = select(r.ts, column).where(r.device_key == key, r.ts >= to_millis(since),
                                       column.is_not(None))
    if until is not None:
        query = query.where(r.ts < to_millis(until))
    rows = session.execute(query.order_by(r.ts, r.seq))
    return [Sample(from_millis(ts), float(v)) for ts, v in rows]


def read_rollups(
    session: Session, device_id: str, metric: Metric, *,
    since: datetime, until: datetime | None = None,
) -> list[RollupPoint]:
    key = telemetry_key(session, device_id)
    if key is None:
        return []
    u = TelemetryRollupRow
    query = select(u).where(u.device_key == key, u.metric == METRIC_IDS[Metric(metric)],
                            u.hour_ms >= to_millis(since))
    if until is not None:
        query = query.where(u.hour_ms < to_millis(until))
    return [RollupPoint(from_millis(row.hour_ms), row.samples, row.min_value, row.max_value,
                        row.avg_value)
            for row in session.execute(query.order_by(u.hour_ms)).scalars()]


def device_status(session: Session, device_id: str) -> DeviceTelemetryStatus | None:
    """Online state and delivery bookkeeping; None for a device that never reported."""
    row = _device_row(session, device_id)
    if row is None:
        return None
    return DeviceTelemetryStatus(
        device_id=row.device_id, online=row.online,
        online_changed_at=from_millis(row.online_changed_ms),
        last_seen_at=from_millis(row.last_seen_ms),
        last_report_at=from_millis(row.last_report_ms) if row.last_report_ms is not None else None,
        interval=timedelta(milliseconds=row.interval_ms), boot_id=row.boot_id,
        last_seq=row.last_seq, agent_version=row.agent_version,
    )


def latest_snapshot(session: Session, device_id: str) -> Snapshot | None:
    row = _device_row(session, device_id)
    if row is None:
        return None
    return Snapshot(
        at=from_millis(row.snapshot_ms) if row.snapshot_ms is not None else None,
        listening=json.loads(row.listening), connections=json.loads(row.connections),
        new_executables=json.loads(row.new_executables),
    )


def _device_row(session: Session, device_id: str) -> TelemetryDeviceRow | None:
    try:
        canonical = canonical_device_id(device_id)
    except ValueError:
        return None
    return session.execute(
        select(TelemetryDeviceRow).where(TelemetryDeviceRow.device_id == canonical)
    ).scalar_one_or_none()


def rejection_counts(
    session: Session, device_id: str | None = None
) -> dict[str, dict[str, int]]:
    """Refused messages as ``{device_id: {reason: count}}``."""
    query = select(TelemetryRejectionRow.device_id, TelemetryRejectionRow.reason,
                   TelemetryRejectionRow.count)
    if device_id is not None:
        query = query.where(TelemetryRejectionRow.device_id == canonical_device_id(device_id))
    out: dict[str, dict[str, int]] = {}
    for dev, reason, count in session.execute(query):
        out.setdefault(dev, {})[reason] = int(count)
    return out


def count_reporting_devices(session: Session, *, online: bool) -> int:
    """How many reporting devices are recorded online (or offline): counted in the database."""
    return int(session.execute(
        select(func.count()).select_from(TelemetryDeviceRow)
        .where(TelemetryDeviceRow.online.is_(online))
    ).scalar_one())


def reporting_device_ids(session: Session, *, online: bool) -> frozenset[str]:
    """The reporting devices recorded online (or offline), for the device list's filter."""
    return frozenset(session.execute(
        select(TelemetryDeviceRow.device_id).where(TelemetryDeviceRow.online.is_(online))
    ).scalars())
