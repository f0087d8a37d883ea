"""Migration 0010: the deltas stored before it become per-second rates (SQLite and PostgreSQL)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from alembic import command
from sqlalchemy import text

from fleetguard.auditlog import attach_audit_keys
from fleetguard.keys import MasterKey
from fleetguard.store import Database, open_database, upgrade_database
from fleetguard.store.migrate import alembic_config

T0 = 1_760_000_000_000
HOUR = 3_600_000
BOOT, REBOOT = 1111, 2222
# (boot, seq, ts, bytes_in): stored as deltas before 0010
ROWS = [
    (BOOT, 1, T0, 5_000.0),  # the first of a boot held the total since boot
    (BOOT, 2, T0 + 60_000, 600.0),
    (BOOT, 3, T0 + 120_000, None),  # came late: stored without deltas
    (BOOT, 4, T0 + 180_000, 1_200.0),  # measured from seq 2 (120 s)
    (REBOOT, 5, T0 + 200_000, 7_000.0),
]


@pytest.fixture
def at_0009(database_url: str, master_key: MasterKey) -> Iterator[Database]:
    database = open_database(database_url)
    upgrade_database(database, "0009")
    attach_audit_keys(database, master_key)
    with database.engine.begin() as conn:
        conn.execute(text(
            "INSERT INTO devices (id, name, state, labels, addresses, created_at, updated_at) VALUES "
            "('dev-1', 'cam', 'active', '{}', '[]', CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"))
        conn.execute(text(
            "INSERT INTO telemetry_devices (key, device_id, last_seen_ms, interval_ms, online, "
            "online_changed_ms, agent_version, counters, listening, connections, new_executables) "
            "VALUES (1, 'dev-1', :t, 60000, true, :t, '0.1', '{\"bytes_in\": 9}', '[]', '[]', '[]')"),
            {"t": T0})
        for boot, seq, ts, bytes_in in ROWS:
            conn.execute(text(
                "INSERT INTO telemetry_reports (device_key, boot, seq, ts, cpu_percent, bytes_in, "
                "tcp_attempts) VALUES (1, :boot, :seq, :ts, 5.0, :b, :b)"),
                {"boot": boot, "seq": seq, "ts": ts, "b": bytes_in})
        conn.execute(text(
            "INSERT INTO telemetry_rollups (device_key, metric, hour_ms, samples, min_value, "
            "max_value, avg_value) VALUES (1, 5, :h, 60, 600, 6000, 1200), (1, 1, :h, 60, 1, 9, 5)"),
            {"h": T0 - HOUR})
    yield database
    database.dispose()


def _bytes_in(db: Database) -> dict[int, float | None]:
    with db.engine.connect() as conn:
        return {seq: value for seq, value in conn.execute(
            text("SELECT seq, bytes_in FROM telemetry_reports ORDER BY seq"))}


def test_stored_deltas_become_rates_and_a_boots_total_a_baseline(at_0009: Database) -> None:
    upgrade_database(at_0009, "0010")
    assert _bytes_in(at_0009) == pytest.approx({1: None, 2: 10.0, 3: None, 4: 10.0, 5: None})
    with at_0009.engine.connect() as conn:
        attempts = conn.execute(text("SELECT tcp_attempts FROM telemetry_reports WHERE seq = 2")).scalar()
        gauges = conn.execute(text("SELECT count(cpu_percent) FROM telemetry_reports")).scalar()
        rollups = dict(conn.execute(text(
            "SELECT metric, max_value FROM telemetry_rollups ORDER BY metric")).all())
        counters = conn.execute(text("SELECT counters FROM telemetry_devices")).scalar()
        new_column = conn.execute(text("SELECT count(udp_in) FROM telemetry_reports")).scalar()
    assert attempts == pytest.approx(10.0) and gauges == len(ROWS)
    assert rollups == pytest.approx({1: 9.0, 5: 100.0})  # bytes: over the 60 s interval
    assert counters == "{}"  # the next report is a baseline
    assert new_column == 0  # counters not stored before: NULL, not 0


def test_downgrade_gives_the_deltas_back_but_a_boots_total(at_0009: Database) -> None:
    upgrade_database(at_0009, "0010")
    cfg = alembic_config()
    with at_0009.engine.begin() as connection:
        cfg.attributes["connection"] = connection
        command.downgrade(cfg, "0009")
    values = _bytes_in(at_0009)
    assert values[2] == pytest.approx(600.0) and values[1] is None and values[5] is None
