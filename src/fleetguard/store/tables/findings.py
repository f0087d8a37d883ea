"""Scans stored on the platform, the hosts they matched, findings with a lifecycle, schedules.

A finding's subject is the registered device it was matched to (``device:<uuid>``) or, for
a host no device claims, its address (``host:<address>``); one row per subject, port,
protocol and check, opened, updated, resolved and reopened across rescans.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    Boolean,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    SmallInteger,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from fleetguard.store.base import Base, UTCDateTime


class ScanScheduleRow(Base):
    __tablename__ = "scan_schedules"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    targets: Mapped[str] = mapped_column(Text)  # JSON list of target expressions
    ports: Mapped[str] = mapped_column(String(500))
    options: Mapped[str] = mapped_column(Text, default="{}")  # JSON object
    interval_s: Mapped[int] = mapped_column(Integer)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    created_by: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    next_run_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    last_run_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    last_scan_id: Mapped[str | None] = mapped_column(String(36), nullable=True)


class ScanRow(Base):
    __tablename__ = "scans"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    source: Mapped[str] = mapped_column(String(16))  # upload | server | schedule
    schedule_id: Mapped[str | None] = mapped_column(
        ForeignKey("scan_schedules.id", ondelete="SET NULL"), nullable=True, index=True
    )
    requested_by: Mapped[str] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(16), index=True)  # running | finished | failed
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    targets: Mapped[str] = mapped_column(Text)  # JSON list, bounded
    options: Mapped[str] = mapped_column(Text, default="{}")  # JSON summary
    progress_done: Mapped[int] = mapped_column(Integer, default=0)
    progress_total: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    hosts_total: Mapped[int] = mapped_column(Integer, default=0)
    hosts_up: Mapped[int] = mapped_column(Integer, default=0)
    findings_total: Mapped[int] = mapped_column(Integer, default=0)
    outcome: Mapped[str] = mapped_column(Text, default="{}")  # JSON counts of transitions
    report_gzip: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    report_size: Mapped[int] = mapped_column(Integer, default=0)  # uncompressed bytes


class ScanHostRow(Base):
    """A host a scan saw up (or found something on), and how it was matched to a device."""

    __tablename__ = "scan_hosts"

    scan_id: Mapped[str] = mapped_column(
        ForeignKey("scans.id", ondelete="CASCADE"), primary_key=True
    )
    address: Mapped[str] = mapped_column(String(45), primary_key=True)
    status: Mapped[str] = mapped_column(String(16))  # up | no-response
    device_id: Mapped[str | None] = mapped_column(
        ForeignKey("devices.id", ondelete="SET NULL"), nullable=True, index=True
    )
    matched_by: Mapped[str] = mapped_column(String(16))  # serial | address | ambiguous | unmatched
    findings: Mapped[int] = mapped_column(Integer, default=0)


class FindingRow(Base):
    __tablename__ = "findings"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    subject: Mapped[str] = mapped_column(String(80))  # device:<uuid> | host:<address>
    device_id: Mapped[str | None] = mapped_column(
        ForeignKey("devices.id", ondelete="CASCADE"), nullable=True, index=True
    )
    host: Mapped[str] = mapped_column(String(45), index=True)  # address last seen at
    port: Mapped[int] = mapped_column(Integer)
    protocol: Mapped[str] = mapped_column(String(3))
    service: Mapped[str] = mapped_column(String(16))
    check: Mapped[str] = mapped_column(String(64), index=True)
    severity: Mapped[str] = mapped_column(String(10))
    severity_rank: Mapped[int] = mapped_column(SmallInteger)
    title: Mapped[str] = mapped_column(String(200))
    evidence: Mapped[str] = mapped_column(Text)
    remediation: Mapped[str] = mapped_column(Text)
    references: Mapped[str] = mapped_column(Text, default="[]")  # JSON list
    state: Mapped[str] = mapped_column(String(10))  # open | resolved
    matched_by: Mapped[str] = mapped_column(String(16))
    first_seen_at: Mapped[datetime] = mapped_column(UTCDateTime())
    last_seen_at: Mapped[datetime] = mapped_column(UTCDateTime())
    resolved_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    reopened: Mapped[int] = mapped_column(Integer, default=0)
    first_scan_id: Mapped[str] = mapped_column(String(36))
    last_scan_id: Mapped[str] = mapped_column(String(36))

    __table_args__ = (
        UniqueConstraint("subject", "port", "protocol", "check", name="uq_findings_key"),
        Index("ix_findings_state_rank", "state", "severity_rank", "id"),
    )


class RiskSnapshotRow(Base):
    """The fleet risk figure, one row per hour (the latest computation in that hour wins),
    so the dashboard can show its trend from stored history."""

    __tablename__ = "fleet_risk_snapshots"

    hour: Mapped[datetime] = mapped_column(UTCDateTime(), primary_key=True)
    computed_at: Mapped[datetime] = mapped_column(UTCDateTime())
    score: Mapped[float] = mapped_column(Float)  # 0-100
    devices: Mapped[int] = mapped_column(Integer)  # devices counted (not decommissioned)
    devices_at_risk: Mapped[int] = mapped_column(Integer)  # with an open finding above info
    open_findings: Mapped[str] = mapped_column(Text, default="{}")  # JSON counts by severity


# What the dashboard's figures and filters read: devices with an open finding of a check,
# and each device's open findings by severity (the risk figure).
Index("ix_findings_state_check_device", FindingRow.state, FindingRow.check, FindingRow.device_id)
Index("ix_findings_state_device_rank", FindingRow.state, FindingRow.device_id,
      FindingRow.severity_rank)
