"""Upkeep of stored telemetry: devices flipped offline and back, raw reports rolled up
into hours and expired. The ingest service's writer thread runs both when due, so SQLite
sees a single writer; each is a plain function over a session, callable on its own.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete, func, literal_column, select, update
from sqlalchemy.orm import Session

from fleetguard.auditlog import append_audit_entry
from fleetguard.protocol import from_millis, to_millis
from fleetguard.store.tables.telemetry import (
    TelemetryDeviceRow,
    TelemetryReportRow,
    TelemetryRollupRow,
)
from fleetguard.telemetry._store import METRIC_COLUMNS, dialect_insert
from fleetguard.telemetry.models import (
    METRIC_IDS,
    CompactionResult,
    OfflinePolicy,
    RetentionPolicy,
    SweepResult,
)

SYSTEM_ACTOR = "system:telemetry"
HOUR_MS = 3_600_000


# -- offline detection ----------------------------------------------------------------


def sweep_offline(
    session: Session, now: datetime, policy: OfflinePolicy | None = None
) -> SweepResult:
    """Flip devices silent for ``missed`` intervals to offline, and back; audit each flip once."""
    policy = policy or OfflinePolicy()
    now_ms = to_millis(now)
    t = TelemetryDeviceRow
    deadline = t.last_seen_ms + policy.missed * t.interval_ms
    offline = session.execute(
        update(t).where(t.online.is_(True), deadline < now_ms)
        .values(online=False, online_changed_ms=now_ms)
        .returning(t.device_id, t.last_seen_ms, t.interval_ms)
        .execution_options(synchronize_session=False)
    ).all()
    online = session.execute(
        update(t).where(t.online.is_(False), deadline >= now_ms)
        .values(online=True, online_changed_ms=now_ms)
        .returning(t.device_id, t.last_seen_ms, t.interval_ms)
        .execution_options(synchronize_session=False)
    ).all()
    for rows, action in ((offline, "device.offline"), (online, "device.online")):
        for device_id, last_seen_ms, interval_ms in sorted(rows):
            append_audit_entry(
                session, actor=SYSTEM_ACTOR, action=action, target=f"device:{device_id}",
                details={"last_seen": from_millis(last_seen_ms).isoformat(),
                         "interval_s": interval_ms / 1000, "missed": policy.missed},
            )
    return SweepResult(went_offline=sorted(r[0] for r in offline),
                       came_online=sorted(r[0] for r in online))


# -- retention and downsampling ---------------------------------------------------------


def compact_telemetry(
    session: Session, now: datetime, policy: RetentionPolicy | None = None, *,
    chunk: int = 500,
) -> CompactionResult:
    """Roll raw reports older than ``policy.raw`` up into hours, delete them, expire rollups.

    The cut-off is a whole hour, so an hour is rolled up once and completely (ingestion
    drops reports older than ``policy.raw``, so none arrives for an hour already done).
    """
    policy = policy or RetentionPolicy()
    cutoff = (to_millis(now - policy.raw) // HOUR_MS) * HOUR_MS
    rollup_cutoff = to_millis(now - policy.rollups)
    keys = list(session.execute(select(TelemetryDeviceRow.key).order_by(TelemetryDeviceRow.key))
                .scalars())
    r, u = TelemetryReportRow, TelemetryRollupRow
    written = deleted = expired = 0
    conn = session.connection()
    postgres = conn.dialect.name == "postgresql"
    least = func.least if postgres else func.min
    greatest = func.greatest if postgres else func.max
    for start in range(0, len(keys), chunk):
        part = keys[start : start + chunk]
        for metric, column in METRIC_COLUMNS.items():
            hour = (r.ts // HOUR_MS) * HOUR_MS
            source = (
                select(r.device_key, literal_column(str(METRIC_IDS[metric])), hour,
                       func.count(column), func.min(column), func.max(column),
                       func.avg(column))
                .where(r.device_key.in_(part), r.ts < cutoff, column.is_not(None))
                .group_by(r.device_key, hour)
            )
            stmt = dialect_insert(conn, u.__table__).from_select(  # type: ignore[arg-type]
                ["device_key", "metric", "hour_ms", "samples", "min_value", "max_value",
                 "avg_value"], source,
            )
            ex = stmt.excluded
            stmt = stmt.on_conflict_do_update(
                index_elements=["device_key", "metric", "hour_ms"],
                set_={
                    "samples": u.samples + ex.samples,
                    "min_value": least(u.min_value, ex.min_value),
                    "max_value": greatest(u.max_value, ex.max_value),
                    "avg_value": (u.avg_value * u.samples + ex.avg_value * ex.samples)
                    / (u.samples + ex.samples),
                },
            )
            written += max(conn.execute(stmt).rowcount, 0)
        deleted += max(conn.execute(
            delete(r).where(r.device_key.in_(part), r.ts < cutoff)
        ).rowcount, 0)
        expired += max(conn.execute(
            delete(u).where(u.device_key.in_(part), u.hour_ms < rollup_cutoff)
        ).rowcount, 0)
    return CompactionResult(raw_cutoff=from_millis(cutoff), rollups_written=written,
                            raw_deleted=deleted, rollups_deleted=expired)


__all__ = ["HOUR_MS", "SYSTEM_ACTOR", "compact_telemetry", "sweep_offline"]
