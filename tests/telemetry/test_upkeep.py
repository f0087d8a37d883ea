"""Offline detection and retention/downsampling (SQLite and PostgreSQL)."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import func, select

from fleetguard.auditlog import list_audit_entries
from fleetguard.core.clock import utcnow
from fleetguard.store import Database
from fleetguard.store.tables import TelemetryReportRow, TelemetryRollupRow
from fleetguard.telemetry import (
    IngestService,
    Metric,
    RetentionPolicy,
    compact_telemetry,
    count_reporting_devices,
    device_status,
    read_rollups,
    read_series,
    reporting_device_ids,
    sweep_offline,
)
from tests.telemetry.support import add_device, body, report


def _audit(db: Database, action: str) -> list[str]:
    with db.session() as session:
        return [e.target for e in list_audit_entries(session, limit=1000) if e.action == action]


def test_offline_after_missed_intervals_recorded_once(db: Database, ingest: IngestService) -> None:
    device, steady = add_device(db, "flaky"), add_device(db, "steady")
    start = utcnow() - timedelta(minutes=3)
    for seq in (1, 2, 3):  # every 60 s: the interval is learned as 60 s
        ingest.submit_telemetry(device, body(report(seq, start + timedelta(minutes=seq))), "application/cbor")
    ingest.submit_telemetry(steady, body(report(1, interval_ms=600_000)), "application/cbor")
    assert ingest.flush()
    now = utcnow()
    with db.session() as session:
        assert device_status(session, device).interval == timedelta(minutes=1)  # type: ignore[union-attr]
        assert sweep_offline(session, now + timedelta(seconds=170)).went_offline == []
    with db.session() as session:
        result = sweep_offline(session, now + timedelta(seconds=200))
    assert result.went_offline == [device]  # 3 x 60 s missed; "steady" has its default 300 s
    with db.session() as session:
        assert sweep_offline(session, now + timedelta(seconds=230)).went_offline == []
        status = device_status(session, device)
    assert status is not None and not status.online
    assert _audit(db, "device.offline") == [f"device:{device}"]
    # It comes back: recorded once too.
    ingest.submit_telemetry(device, body(report(4)), "application/cbor")
    assert ingest.flush()
    with db.session() as session:
        assert sweep_offline(session, utcnow()).came_online == [device]
    with db.session() as session:
        assert sweep_offline(session, utcnow()).came_online == []
        assert device_status(session, device).online  # type: ignore[union-attr]
    assert _audit(db, "device.online") == [f"device:{device}"]


def test_offline_devices_are_counted_and_listed_in_the_database(
    db: Database, ingest: IngestService
) -> None:
    quiet, steady = add_device(db, "quiet"), add_device(db, "steady")
    start = utcnow() - timedelta(minutes=3)
    for seq in (1, 2, 3):  # every 60 s: three missed minutes make it offline
        ingest.submit_telemetry(quiet, body(report(seq, start + timedelta(minutes=seq))),
                                "application/cbor")
    ingest.submit_telemetry(steady, body(report(1, interval_ms=600_000)), "application/cbor")
    assert ingest.flush()
    with db.session() as session:
        sweep_offline(session, utcnow() + timedelta(seconds=200))
    with db.read_session() as session:
        assert count_reporting_devices(session, online=False) == 1
        assert count_reporting_devices(session, online=True) == 1
        assert reporting_device_ids(session, online=False) == {quiet}
        assert reporting_device_ids(session, online=True) == {steady}


def test_compaction_rolls_up_hours_and_deletes_old_raw_rows(db: Database) -> None:
    device = add_device(db)
    now = utcnow()
    hour = (now - timedelta(days=3)).replace(minute=0, second=0, microsecond=0)
    keep = RetentionPolicy(raw=timedelta(days=30))
    with IngestService(db, retention=keep, sweep_every_s=None, compact_every_s=None) as service:
        for seq, (minute, cpu) in enumerate([(5, 10.0), (20, 20.0), (50, 60.0)], 1):
            service.submit_telemetry(device, body(report(seq, hour + timedelta(minutes=minute), cpu_percent=cpu)),
                                     "application/cbor")
        service.submit_telemetry(device, body(report(4, hour + timedelta(hours=1, minutes=1), cpu_percent=5.0)),
                                 "application/cbor")
        service.submit_telemetry(device, body(report(5, now - timedelta(minutes=1), cpu_percent=1.0)),
                                 "application/cbor")
        assert service.flush()
    policy = RetentionPolicy(raw=timedelta(days=1), rollups=timedelta(days=30))
    with db.session() as session:
        result = compact_telemetry(session, now, policy)
    assert result.raw_deleted == 4
    with db.session() as session:
        points = read_rollups(session, device, Metric.CPU_PERCENT, since=hour - timedelta(hours=1))
        raw = read_series(session, device, Metric.CPU_PERCENT, since=hour - timedelta(hours=1))
    assert [(p.hour, p.samples, p.min, p.max) for p in points] == [
        (hour, 3, 10.0, 60.0), (hour + timedelta(hours=1), 1, 5.0, 5.0)
    ]
    assert abs(points[0].avg - 30.0) < 1e-9
    assert [s.value for s in raw] == [1.0]
    # Compacting again changes nothing; rollups expire after their own retention.
    with db.session() as session:
        again = compact_telemetry(session, now, policy)
    assert again.raw_deleted == 0 and again.rollups_written == 0
    with db.session() as session:
        compact_telemetry(session, now, RetentionPolicy(raw=timedelta(days=1), rollups=timedelta(days=2)))
        left = session.execute(select(func.count()).select_from(TelemetryRollupRow)).scalar_one()
        raw_left = session.execute(select(func.count()).select_from(TelemetryReportRow)).scalar_one()
    assert left == 0 and raw_left == 1
