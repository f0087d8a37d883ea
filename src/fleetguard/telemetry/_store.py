"""The statements of the write path, in Core (executemany), for SQLite and PostgreSQL."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Table, bindparam, insert, select, text, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from fleetguard.core.errors import NotFoundError
from fleetguard.registry import service as registry
from fleetguard.store.tables import (
    TelemetryDeviceRow,
    TelemetryRejectionRow,
    TelemetryReportRow,
)
from fleetguard.telemetry._plan import DeviceState, Plan, snapshot_params, state_params

DEVICES: Table = TelemetryDeviceRow.__table__  # type: ignore[assignment]
REPORTS: Table = TelemetryReportRow.__table__  # type: ignore[assignment]
REJECTIONS: Table = TelemetryRejectionRow.__table__  # type: ignore[assignment]
_CHUNK = 500


def dialect_insert(conn: Connection, table: Table) -> Any:
    if conn.dialect.name == "postgresql":
        return postgresql.insert(table)
    return sqlite.insert(table)


def load_states(
    session: Session, device_ids: Iterable[str], *, now_ms: int, default_interval_ms: int
) -> tuple[dict[str, DeviceState], set[str]]:
    """States of these devices, creating rows for first-time reporters; and unknown ids."""
    wanted = sorted(set(device_ids))
    found: dict[str, DeviceState] = {}
    conn = session.connection()
    for start in range(0, len(wanted), _CHUNK):
        chunk = wanted[start : start + _CHUNK]
        rows = conn.execute(
            select(DEVICES.c.key, DEVICES.c.device_id, DEVICES.c.boot_id, DEVICES.c.last_seq,
                   DEVICES.c.last_report_ms, DEVICES.c.last_seen_ms, DEVICES.c.interval_ms,
                   DEVICES.c.agent_version, DEVICES.c.counters, DEVICES.c.new_executables)
            .where(DEVICES.c.device_id.in_(chunk))
        ).all()
        for r in rows:
            found[r.device_id] = DeviceState(
                key=r.key, device_id=r.device_id, boot_id=r.boot_id, last_seq=r.last_seq,
                last_report_ms=r.last_report_ms, last_seen_ms=r.last_seen_ms,
                interval_ms=r.interval_ms, agent_version=r.agent_version,
                counters=json.loads(r.counters), recent_executables=json.loads(r.new_executables),
            )
    unknown: set[str] = set()
    for device_id in wanted:
        if device_id in found:
            continue
        try:
            registry.get_device(session, device_id)
        except NotFoundError:
            unknown.add(device_id)
            continue
        key = conn.execute(
            insert(DEVICES).values(
                device_id=device_id, last_seen_ms=now_ms, interval_ms=default_interval_ms,
                online=True, online_changed_ms=now_ms, counters="{}", listening="[]",
                connections="[]", new_executables="[]",
            ).returning(DEVICES.c.key)
        ).scalar_one()
        found[device_id] = DeviceState(
            key=key, device_id=device_id, boot_id=None, last_seq=None, last_report_ms=None,
            last_seen_ms=now_ms, interval_ms=default_interval_ms, agent_version=None,
            counters={}, recent_executables=[],
        )
    return found, unknown


_PG_REPORT_TYPES = {"device_key": "integer", "boot": "bigint", "seq": "bigint", "ts": "bigint"}
_PG_DEVICE_TYPES = {
    "k": "integer", "boot_id": "varchar", "last_seq": "bigint", "last_report_ms": "bigint",
    "last_seen_ms": "bigint", "interval_ms": "integer", "agent_version": "varchar",
    "counters": "text", "new_executables": "text", "snapshot_ms": "bigint",
    "listening": "text", "connections": "text",
}


def _pg_report_type(column: str) -> str:
    return _PG_REPORT_TYPES.get(column, "double precision")  # every metric is a float


def write_plan(session: Session, plan: Plan) -> int:
    """Insert the reports (duplicates skipped by the key) and update device rows.

    Returns how many report rows were new: RETURNING gives back only those, so duplicates
    count exactly on both databases. PostgreSQL gets one statement per batch over arrays
    (``unnest``), which its driver binds far faster than a many-row VALUES list.
    """
    conn = session.connection()
    postgres = conn.dialect.name == "postgresql"
    inserted = 0
    if plan.report_rows:
        if postgres:
            inserted = _pg_insert_reports(conn, plan.report_rows)
        else:
            stmt = dialect_insert(conn, REPORTS).on_conflict_do_nothing(
                index_elements=["device_key", "boot", "seq"]
            ).returning(REPORTS.c.seq)
            inserted = len(conn.execute(stmt, plan.report_rows).all())
    with_snapshot: list[dict[str, Any]] = []
    without: list[dict[str, Any]] = []
    for device_id, state in plan.states.items():
        params = state_params(state)
        snap = plan.snapshots.get(device_id)
        if snap is None:
            without.append(params)
        else:
            with_snapshot.append({**params, **snapshot_params(snap)})
    for rows in (without, with_snapshot):
        if not rows:
            continue
        if postgres:
            _pg_update_devices(conn, rows)
        else:
            values: dict[str, Any] = {n: bindparam(n) for n in rows[0] if n != "k"}
            conn.execute(update(DEVICES).where(DEVICES.c.key == bindparam("k")).values(**values),
                         rows)
    return inserted


def _pg_insert_reports(conn: Connection, rows: list[dict[str, Any]]) -> int:
    columns = list(rows[0])
    arrays = {c: [r[c] for r in rows] for c in columns}
    sources = ", ".join(f"CAST(:{c} AS {_pg_report_type(c)}[])" for c in columns)
    sql = (
        f"INSERT INTO telemetry_reports ({', '.join(columns)}) "  # noqa: S608 - fixed names
        f"SELECT * FROM unnest({sources}) "
        "ON CONFLICT (device_key, boot, seq) DO NOTHING RETURNING seq"
    )
    return len(conn.execute(text(sql), arrays).all())


def _pg_update_devices(conn: Connection, rows: list[dict[str, Any]]) -> None:
    columns = list(rows[0])
    arrays = {c: [r[c] for r in rows] for c in columns}
    sources = ", ".join(f"CAST(:{c} AS {_PG_DEVICE_TYPES[c]}[])" for c in columns)
    sets = ", ".join(f"{c} = v.{c}" for c in columns if c != "k")
    sql = (
        f"UPDATE telemetry_devices AS d SET {sets} "  # noqa: S608 - fixed names
        f"FROM unnest({sources}) AS v({', '.join(columns)}) WHERE d.key = v.k"
    )
    conn.execute(text(sql), arrays)


def add_rejections(
    session: Session, counts: Mapping[tuple[str, str], tuple[int, datetime, datetime]]
) -> None:
    if not counts:
        return
    conn = session.connection()
    stmt = dialect_insert(conn, REJECTIONS)
    stmt = stmt.on_conflict_do_update(
        index_elements=["device_id", "reason"],
        set_={"count": REJECTIONS.c.count + stmt.excluded.count,
              "last_at": stmt.excluded.last_at},
    )
    conn.execute(stmt, [
        {"device_id": device_id, "reason": reason, "count": n, "first_at": first,
         "last_at": last}
        for (device_id, reason), (n, first, last) in sorted(counts.items())
    ])
