"""Fleet-wide figures from open findings: which devices have what, and the fleet risk.

**The fleet risk figure** (0-100; 0 is a fleet with no open finding above info):

- each open finding of a device weighs by its severity: critical 40, high 20, medium 8,
  low 2, info 0;
- a device's risk is the sum of its open findings' weights, capped at 100 (one open
  default credential and one cleartext service: 48);
- the fleet risk is the mean device risk over every registered device that is not
  decommissioned (a device with no open finding counts as 0), to one decimal.

So the figure moves when a finding opens or resolves and when devices join or leave the
fleet. It is stored at most once per hour (the latest computation of an hour wins) after
every scan ingestion and periodically by the server, and its trend is read back from that
stored history::

    snapshot = record_risk_snapshot(session)
    history = risk_history(session, since=utcnow() - timedelta(days=30))
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import case, func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from fleetguard.core.clock import utcnow
from fleetguard.core.severity import Severity
from fleetguard.findings.models import FindingState
from fleetguard.findings.queries import count_findings_by_severity
from fleetguard.registry import DeviceState
from fleetguard.registry import listing as registry_listing
from fleetguard.registry import service as registry
from fleetguard.store.idset import in_id_set
from fleetguard.store.tables.findings import FindingRow, RiskSnapshotRow

RISK_WEIGHTS: dict[Severity, int] = {
    Severity.CRITICAL: 40,
    Severity.HIGH: 20,
    Severity.MEDIUM: 8,
    Severity.LOW: 2,
    Severity.INFO: 0,
}
DEVICE_RISK_CAP = 100


@dataclass(frozen=True, slots=True)
class RiskSnapshot:
    hour: datetime  # the hour the figure stands for (start of the hour, UTC)
    computed_at: datetime
    score: float  # 0-100
    devices: int  # devices counted: registered and not decommissioned
    devices_at_risk: int  # of those, with an open finding above info
    open_findings: dict[Severity, int]  # open findings by severity, fleet-wide


def _open_on_devices() -> tuple[Any, ...]:
    return (FindingRow.state == FindingState.OPEN.value, FindingRow.device_id.is_not(None))


def open_finding_device_ids(
    session: Session, *, check: str | None = None, min_severity: Severity | None = None
) -> frozenset[str]:
    """Devices with at least one open finding of ``check`` and/or at ``min_severity`` or
    worse (the device list's finding filters)."""
    query = select(FindingRow.device_id).where(*_open_on_devices()).distinct()
    if check:
        query = query.where(FindingRow.check == check)
    if min_severity is not None:
        query = query.where(FindingRow.severity_rank >= min_severity.rank)
    return frozenset(str(d) for d in session.execute(query).scalars())


def count_devices_with_open_check(session: Session, check: str) -> int:
    """How many devices have ``check`` open (e.g. default-credentials): an exact count."""
    query = select(func.count(func.distinct(FindingRow.device_id))).where(
        *_open_on_devices(), FindingRow.check == check
    )
    return int(session.execute(query).scalar_one())


def _hour(moment: datetime) -> datetime:
    return moment.replace(minute=0, second=0, microsecond=0)


def fleet_risk(session: Session, *, now: datetime | None = None) -> RiskSnapshot:
    """The fleet risk figure as of now (see the module docstring), not stored."""
    now = now or utcnow()
    by_state = registry.count_devices_by_state(session)
    devices = sum(by_state.values()) - by_state[DeviceState.DECOMMISSIONED]
    weight = case(
        *((FindingRow.severity_rank == s.rank, w) for s, w in RISK_WEIGHTS.items()), else_=0
    )
    per_device = select(FindingRow.device_id, func.sum(weight).label("risk")).where(
        *_open_on_devices()
    )
    if by_state[DeviceState.DECOMMISSIONED]:
        gone = registry_listing.device_ids_in_state(session, DeviceState.DECOMMISSIONED)
        per_device = per_device.where(~in_id_set(FindingRow.device_id, gone))
    risks = per_device.group_by(FindingRow.device_id).subquery()
    capped = case((risks.c.risk > DEVICE_RISK_CAP, DEVICE_RISK_CAP), else_=risks.c.risk)
    total, at_risk = session.execute(
        select(func.coalesce(func.sum(capped), 0), func.count().filter(risks.c.risk > 0))
    ).one()
    score = round(float(total) / devices, 1) if devices else 0.0
    return RiskSnapshot(
        hour=_hour(now), computed_at=now, score=min(score, 100.0), devices=devices,
        devices_at_risk=int(at_risk), open_findings=count_findings_by_severity(session),
    )  # fmt: skip


def _latest(session: Session) -> RiskSnapshotRow | None:
    return session.execute(
        select(RiskSnapshotRow).order_by(RiskSnapshotRow.hour.desc()).limit(1)
    ).scalar_one_or_none()


def record_risk_snapshot(
    session: Session, *, now: datetime | None = None, unless_newer_than: timedelta | None = None
) -> RiskSnapshot | None:
    """Compute the fleet risk and store it as this hour's figure (replacing an earlier
    one of the same hour). With ``unless_newer_than``, skip it (None) when the stored
    figure is at most that old: the server's periodic call."""
    now = now or utcnow()
    if unless_newer_than is not None:
        latest = _latest(session)
        if latest is not None and now - latest.computed_at <= unless_newer_than:
            return None
    snap = fleet_risk(session, now=now)
    values = {
        "hour": snap.hour, "computed_at": snap.computed_at, "score": snap.score,
        "devices": snap.devices, "devices_at_risk": snap.devices_at_risk,
        "open_findings": json.dumps({s.value: n for s, n in snap.open_findings.items()}),
    }  # fmt: skip
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    statement = insert(RiskSnapshotRow).values(**values)
    session.execute(statement.on_conflict_do_update(
        index_elements=[RiskSnapshotRow.hour],
        set_={k: v for k, v in values.items() if k != "hour"},
    ))  # fmt: skip
    return snap


def risk_history(session: Session, *, since: datetime) -> list[RiskSnapshot]:
    """Stored hourly figures from ``since``, oldest first."""
    rows = session.execute(
        select(RiskSnapshotRow).where(RiskSnapshotRow.hour >= _hour(since))
        .order_by(RiskSnapshotRow.hour)
    ).scalars()  # fmt: skip
    return [
        RiskSnapshot(
            hour=r.hour, computed_at=r.computed_at, score=r.score, devices=r.devices,
            devices_at_risk=r.devices_at_risk,
            open_findings={Severity(k): int(v) for k, v in json.loads(r.open_findings).items()},
        )
        for r in rows
    ]


__all__ = [
    "DEVICE_RISK_CAP",
    "RISK_WEIGHTS",
    "RiskSnapshot",
    "count_devices_with_open_check",
    "fleet_risk",
    "open_finding_device_ids",
    "record_risk_snapshot",
    "risk_history",
]
