"""Telemetry: raw reports (one narrow row each), hourly rollups, per-device state, commands.

Timestamps of the series are integer milliseconds since the epoch (compact, fast to bind
and compare on both databases); bookkeeping timestamps are UTCDateTime as elsewhere.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    Float,
    ForeignKey,
    Index,
    Integer,
    SmallInteger,
    String,
    Text,
)
from sqlalchemy.orm import Mapped, mapped_column

from fleetguard.store.base import Base, UTCDateTime


class TelemetryDeviceRow(Base):
    """One row per reporting device: a small integer key, delivery state, latest snapshot."""

    __tablename__ = "telemetry_devices"

    key: Mapped[int] = mapped_column(Integer, primary_key=True)
    device_id: Mapped[str] = mapped_column(
        ForeignKey("devices.id", ondelete="CASCADE"), unique=True
    )
    boot_id: Mapped[str | None] = mapped_column(String(36), nullable=True)
    last_seq: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    last_report_ms: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    last_seen_ms: Mapped[int] = mapped_column(BigInteger)
    interval_ms: Mapped[int] = mapped_column(Integer)
    online: Mapped[bool] = mapped_column(Boolean)
    online_changed_ms: Mapped[int] = mapped_column(BigInteger)
    agent_version: Mapped[str | None] = mapped_column(String(64), nullable=True)
    # The reading the next report's rates are measured from (boot, seq, time, counters), JSON
    counters: Mapped[str] = mapped_column(Text, default="{}")
    snapshot_ms: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    listening: Mapped[str] = mapped_column(Text, default="[]")  # JSON, latest report
    connections: Mapped[str] = mapped_column(Text, default="[]")  # JSON, latest report
    new_executables: Mapped[str] = mapped_column(Text, default="[]")  # JSON, most recent seen


class TelemetryReportRow(Base):
    """One row per accepted report; metrics are fixed nullable columns (see Metric).

    Counter columns (``bytes_in`` .. ``drops_out``) hold per-second rates since the
    previous report of the same boot, NULL on a new baseline (protocol.counters)."""

    __tablename__ = "telemetry_reports"

    device_key: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    boot: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    seq: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    ts: Mapped[int] = mapped_column(BigInteger)
    cpu_percent: Mapped[float | None] = mapped_column(Float, nullable=True)
    load_1: Mapped[float | None] = mapped_column(Float, nullable=True)
    memory_used_percent: Mapped[float | None] = mapped_column(Float, nullable=True)
    disk_used_percent: Mapped[float | None] = mapped_column(Float, nullable=True)
    bytes_in: Mapped[float | None] = mapped_column(Float, nullable=True)
    bytes_out: Mapped[float | None] = mapped_column(Float, nullable=True)
    packets_in: Mapped[float | None] = mapped_column(Float, nullable=True)
    packets_out: Mapped[float | None] = mapped_column(Float, nullable=True)
    tcp_attempts: Mapped[float | None] = mapped_column(Float, nullable=True)
    tcp_attempt_fails: Mapped[float | None] = mapped_column(Float, nullable=True)
    tcp_inbound: Mapped[float | None] = mapped_column(Float, nullable=True)
    tcp_resets: Mapped[float | None] = mapped_column(Float, nullable=True)
    tcp_retransmits: Mapped[float | None] = mapped_column(Float, nullable=True)
    tcp_in_errors: Mapped[float | None] = mapped_column(Float, nullable=True)
    udp_in: Mapped[float | None] = mapped_column(Float, nullable=True)
    udp_out: Mapped[float | None] = mapped_column(Float, nullable=True)
    udp_no_port: Mapped[float | None] = mapped_column(Float, nullable=True)
    udp_in_errors: Mapped[float | None] = mapped_column(Float, nullable=True)
    errors_in: Mapped[float | None] = mapped_column(Float, nullable=True)
    errors_out: Mapped[float | None] = mapped_column(Float, nullable=True)
    drops_in: Mapped[float | None] = mapped_column(Float, nullable=True)
    drops_out: Mapped[float | None] = mapped_column(Float, nullable=True)
    connections: Mapped[float | None] = mapped_column(Float, nullable=True)
    remote_peers: Mapped[float | None] = mapped_column(Float, nullable=True)
    listening_ports: Mapped[float | None] = mapped_column(Float, nullable=True)
    auth_failures: Mapped[float | None] = mapped_column(Float, nullable=True)
    new_executables: Mapped[float | None] = mapped_column(Float, nullable=True)
    process_count: Mapped[float | None] = mapped_column(Float, nullable=True)
    uptime_s: Mapped[float | None] = mapped_column(Float, nullable=True)

    __table_args__ = (Index("ix_telemetry_reports_device_ts", "device_key", "ts"),)


class TelemetryRollupRow(Base):
    """Hourly min/max/avg of one metric of one device, kept after the raw rows are gone."""

    __tablename__ = "telemetry_rollups"

    device_key: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    metric: Mapped[int] = mapped_column(SmallInteger, primary_key=True, autoincrement=False)
    hour_ms: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    samples: Mapped[int] = mapped_column(Integer)
    min_value: Mapped[float] = mapped_column(Float)
    max_value: Mapped[float] = mapped_column(Float)
    avg_value: Mapped[float] = mapped_column(Float)


class TelemetryRejectionRow(Base):
    """Refused messages per device and reason."""

    __tablename__ = "telemetry_rejections"

    device_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    reason: Mapped[str] = mapped_column(String(32), primary_key=True)
    count: Mapped[int] = mapped_column(BigInteger)
    first_at: Mapped[datetime] = mapped_column(UTCDateTime())
    last_at: Mapped[datetime] = mapped_column(UTCDateTime())


class DeviceCommandRow(Base):
    """A command queued for a device, and what became of it."""

    __tablename__ = "device_commands"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    device_id: Mapped[str] = mapped_column(ForeignKey("devices.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(32))
    checks: Mapped[str | None] = mapped_column(Text, nullable=True)  # JSON list of check ids
    status: Mapped[str] = mapped_column(String(16))
    issued_by: Mapped[str] = mapped_column(String(200))
    issued_at: Mapped[datetime] = mapped_column(UTCDateTime())
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    result_detail: Mapped[str | None] = mapped_column(Text, nullable=True)
    result_checks: Mapped[str | None] = mapped_column(Text, nullable=True)  # JSON

    __table_args__ = (Index("ix_device_commands_device_status", "device_id", "status"),)
