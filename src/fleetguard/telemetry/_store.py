"""The statements of the write path, in Core (executemany), for SQLite and PostgreSQL."""

from __future__ import annotations

import json
import operator
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Table, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from fleetguard.registry import service as registry
from fleetguard.store.tables.telemetry import (
    TelemetryDeviceRow,
    TelemetryRejectionRow,
    TelemetryReportRow,
)
from fleetguard.telemetry._plan import (
    REPORT_COLUMNS,
    DeviceState,
    Plan,
    ReportRow,
    device_update,
    reference_from_json,
)
from fleetguard.telemetry._wire import encode_json
from fleetguard.telemetry.models import Metric

DEVICES: Table = TelemetryDeviceRow.__table__  # type: ignore[assignment]
REPORTS: Table = TelemetryReportRow.__table__  # type: ignore[assignment]
REJECTIONS: Table = TelemetryRejectionRow.__table__  # type: ignore[assignment]
_CHUNK = 500
# The report table's column of each metric (they share their names).
METRIC_COLUMNS = {metric: getattr(TelemetryReportRow, metric.value) for metric in Metric}


def dialect_insert(conn: Connection, table: Table) -> Any:
    if conn.dialect.name == "postgresql":
        return postgresql.insert(table)
    return sqlite.insert(table)


_STATE_COLUMNS = (DEVICES.c.key, DEVICES.c.device_id, DEVICES.c.boot_id, DEVICES.c.last_seq,
                  DEVICES.c.last_report_ms, DEVICES.c.last_seen_ms, DEVICES.c.interval_ms,
                  DEVICES.c.agent_version, DEVICES.c.counters, DEVICES.c.new_executables)


def _select_states(
    conn: Connection, device_ids: list[str], *, lock: bool
) -> dict[str, DeviceState]:
    # In device id order, so that writers in other processes lock rows in the same order.
    query = (select(*_STATE_COLUMNS).where(DEVICES.c.device_id.in_(device_ids))
             .order_by(DEVICES.c.device_id))
    if lock:
        query = query.with_for_update()
    return {
        r.device_id: DeviceState(
            key=r.key, device_id=r.device_id, boot_id=r.boot_id, last_seq=r.last_seq,
            last_report_ms=r.last_report_ms, last_seen_ms=r.last_seen_ms,
            interval_ms=r.interval_ms, agent_version=r.agent_version,
            counters=reference_from_json(r.counters),
            recent_executables=json.loads(r.new_executables),
        )
        for r in conn.execute(query)
    }


def load_states(
    session: Session, device_ids: Iterable[str], *, now_ms: int, default_interval_ms: int,
    lock: bool = False,
) -> tuple[dict[str, DeviceState], set[str]]:
    """States of these devices, creating rows for first-time reporters; and unknown ids.

    ``lock``: other processes write telemetry too; the rows are locked until commit
    (PostgreSQL; SQLite's write transaction already excludes every other writer).
    """
    wanted = sorted(set(device_ids))
    found: dict[str, DeviceState] = {}
    conn = session.connection()
    for start in range(0, len(wanted), _CHUNK):
        found.update(_select_states(conn, wanted[start : start + _CHUNK], lock=lock))
    first_reports = [d for d in wanted if d not in found]
    registered = registry.registered_device_ids(session, first_reports) if first_reports else set()
    unknown = set(first_reports) - registered
    for device_id in first_reports:
        if device_id in unknown:
            continue
        # Another process may create the row first: then it is read (and locked) instead.
        key = conn.execute(
            dialect_insert(conn, DEVICES).values(
                device_id=device_id, last_seen_ms=now_ms, interval_ms=default_interval_ms,
                online=True, online_changed_ms=now_ms, counters="{}", listening="[]",
                connections="[]", new_executables="[]",
            ).on_conflict_do_nothing(index_elements=[DEVICES.c.device_id])
            .returning(DEVICES.c.key)
        ).scalar_one_or_none()
        if key is None:
            found.update(_select_states(conn, [device_id], lock=lock))
            continue
        found[device_id] = DeviceState(
            key=key, device_id=device_id, boot_id=None, last_seq=None, last_report_ms=None,
            last_seen_ms=now_ms, interval_ms=default_interval_ms, agent_version=None,
            counters=None, recent_executables=[],
        )
    return found, unknown


_PG_TYPES = {
    "device_key": "integer", "boot": "bigint", "seq": "bigint", "ts": "bigint",
    "k": "integer", "boot_id": "varchar", "last_seq": "bigint", "last_report_ms": "bigint",
    "last_seen_ms": "bigint", "interval_ms": "integer", "agent_version": "varchar",
    "counters": "text", "new_executables": "text", "snapshot_ms": "bigint",
    "listening": "text", "connections": "text",
}


def _pg_type(column: str, table: str) -> str:
    if table == "telemetry_reports" and column not in ("device_key", "boot", "seq", "ts"):
        return "double precision"  # every metric is a float
    return _PG_TYPES[column]


def write_plan(session: Session, plan: Plan) -> tuple[int, set[int]]:
    """Insert the reports (duplicates skipped by the key) and update device rows.

    Returns how many report rows were new, and which of the rows that may already have
    been stored (``plan.checked``) were (by index). The statements go to the driver as
    they are, without SQLAlchemy's per-row parameter processing: ``executemany`` over
    tuples on SQLite; on PostgreSQL one statement per batch whose rows travel as a single
    JSON document (``json_to_recordset``), which the driver sends as one string instead
    of escaping element by element as it does for arrays. The checked rows (late or
    resent reports: rare) go one statement each, whose row count says whether it was new.
    """
    conn = session.connection()
    postgres = conn.dialect.name == "postgresql"
    insert = _pg_insert_reports if postgres else _sqlite_insert_reports
    rows = plan.report_rows
    fresh = [r for i, r in enumerate(rows) if i not in plan.checked] if plan.checked else rows
    inserted = insert(conn, fresh) if fresh else 0
    already: set[int] = set()
    for index in sorted(plan.checked):
        if insert(conn, [rows[index]]):
            inserted += 1
        else:
            already.add(index)
    groups: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    for device_id, state in plan.states.items():
        params = device_update(plan, device_id, state)
        groups.setdefault(tuple(params), []).append(params)
    for columns, group in groups.items():
        if postgres:
            _pg_update_devices(conn, columns, group)
        else:
            _sqlite_update_devices(conn, columns, group)
    return inserted, already


def _sqlite_insert_reports(conn: Connection, rows: list[ReportRow]) -> int:
    marks = ", ".join("?" for _ in REPORT_COLUMNS)
    result = conn.exec_driver_sql(
        f"INSERT INTO telemetry_reports ({', '.join(REPORT_COLUMNS)}) "  # noqa: S608
        f"VALUES ({marks}) ON CONFLICT (device_key, boot, seq) DO NOTHING",
        rows,
    )
    return max(result.rowcount, 0)


def _sqlite_update_devices(
    conn: Connection, columns: tuple[str, ...], rows: list[dict[str, Any]]
) -> None:
    named = [c for c in columns if c != "k"]
    sets = ", ".join(f"{c} = ?" for c in named)
    params = operator.itemgetter(*named, "k")
    conn.exec_driver_sql(
        f"UPDATE telemetry_devices SET {sets} WHERE key = ?",  # noqa: S608 - fixed names
        [params(r) for r in rows],
    )


def _pg_recordset(columns: Sequence[str], table: str) -> str:
    return ", ".join(f"{c} {_pg_type(c, table)}" for c in columns)


def _pg_insert_reports(conn: Connection, rows: list[ReportRow]) -> int:
    names = ", ".join(REPORT_COLUMNS)
    record = _pg_recordset(REPORT_COLUMNS, "telemetry_reports")
    # msgspec writes the document about 6x faster than json.dumps (floats, mostly).
    document = encode_json([dict(zip(REPORT_COLUMNS, r, strict=True)) for r in rows]).decode()
    result = conn.exec_driver_sql(
        f"INSERT INTO telemetry_reports ({names}) SELECT {names} "  # noqa: S608 - fixed names
        f"FROM json_to_recordset(%s::json) AS v({record}) "
        "ON CONFLICT (device_key, boot, seq) DO NOTHING",
        (document,),
    )
    return max(result.rowcount, 0)


def _pg_update_devices(
    conn: Connection, columns: tuple[str, ...], rows: list[dict[str, Any]]
) -> None:
    sets = ", ".join(f"{c} = v.{c}" for c in columns if c != "k")
    conn.exec_driver_sql(
        f"UPDATE telemetry_devices AS d SET {sets} "  # noqa: S608 - fixed names
        f"FROM json_to_recordset(%s::json) AS v({_pg_recordset(columns, 'telemetry_devices')}) "
        "WHERE d.key = v.k",
        (encode_json(rows).decode(),),
    )


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
