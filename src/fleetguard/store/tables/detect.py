"""Detection: alarms, rule sets (versioned), operators' feedback, each device's detector state.

Owned by :mod:`fleetguard.detect`. A rule set is stored per *scope* (``fleet`` or
``group:<name>``), one row per version; the scope's head names the version in force.
An alarm is one row per device and cause from opening to resolution; a cause that fires
again after its alarm is resolved opens a new row.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    BigInteger,
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


class RuleSetVersionRow(Base):
    """One activated version of a scope's rule set, as the operator wrote it (JSON)."""

    __tablename__ = "detection_rulesets"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    scope: Mapped[str] = mapped_column(String(120))  # fleet | group:<name>
    version: Mapped[int] = mapped_column(Integer)  # 1, 2, ... per scope
    document: Mapped[str] = mapped_column(Text)  # canonical JSON
    activated_by: Mapped[str] = mapped_column(String(200))
    activated_at: Mapped[datetime] = mapped_column(UTCDateTime())

    __table_args__ = (UniqueConstraint("scope", "version", name="uq_detection_rulesets_version"),)


class RuleSetHeadRow(Base):
    """The version in force per scope: what the detection service polls (a few rows)."""

    __tablename__ = "detection_ruleset_heads"

    scope: Mapped[str] = mapped_column(String(120), primary_key=True)
    version: Mapped[int] = mapped_column(Integer)


class AlarmRow(Base):
    __tablename__ = "alarms"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    device_id: Mapped[str] = mapped_column(ForeignKey("devices.id", ondelete="CASCADE"))
    cause: Mapped[str] = mapped_column(String(200))  # rule id + subject: the dedup key
    rule_id: Mapped[str] = mapped_column(String(64), index=True)
    kind: Mapped[str] = mapped_column(String(16))
    family: Mapped[str] = mapped_column(String(32))
    severity: Mapped[str] = mapped_column(String(10))
    severity_rank: Mapped[int] = mapped_column(SmallInteger)
    confidence: Mapped[str] = mapped_column(String(8))
    confidence_rank: Mapped[int] = mapped_column(SmallInteger)
    state: Mapped[str] = mapped_column(String(12))  # active | acknowledged | resolved
    summary: Mapped[str] = mapped_column(Text)
    description: Mapped[str] = mapped_column(Text, default="")
    features: Mapped[str] = mapped_column(Text, default="[]")  # JSON list of feature names
    observed: Mapped[float | None] = mapped_column(Float, nullable=True)
    comparison: Mapped[str | None] = mapped_column(String(2), nullable=True)
    threshold: Mapped[float | None] = mapped_column(Float, nullable=True)
    expected: Mapped[str] = mapped_column(Text, default="")
    expected_low: Mapped[float | None] = mapped_column(Float, nullable=True)
    expected_high: Mapped[float | None] = mapped_column(Float, nullable=True)
    subjects: Mapped[str] = mapped_column(Text, default="{}")  # JSON: what it named, bounded
    since_ms: Mapped[int] = mapped_column(BigInteger)  # when the cause began
    first_seq: Mapped[int] = mapped_column(BigInteger)  # the reports behind it
    last_seq: Mapped[int] = mapped_column(BigInteger)
    first_collected_ms: Mapped[int] = mapped_column(BigInteger)
    last_collected_ms: Mapped[int] = mapped_column(BigInteger)
    reports: Mapped[int] = mapped_column(Integer, default=1)  # reports it fired on
    quiet_reports: Mapped[int] = mapped_column(Integer, default=0)  # since it last fired
    suppressed: Mapped[int] = mapped_column(Integer, default=0)  # new alarms rate-limited
    opened_at: Mapped[datetime] = mapped_column(UTCDateTime())
    last_seen_at: Mapped[datetime] = mapped_column(UTCDateTime())
    acknowledged_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    acknowledged_by: Mapped[str | None] = mapped_column(String(200), nullable=True)
    resolved_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    resolved_by: Mapped[str | None] = mapped_column(String(200), nullable=True)
    verdict: Mapped[str | None] = mapped_column(String(16), nullable=True)
    verdict_note: Mapped[str | None] = mapped_column(Text, nullable=True)
    verdict_by: Mapped[str | None] = mapped_column(String(200), nullable=True)
    verdict_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)

    __table_args__ = (
        Index("ix_alarms_device_state", "device_id", "state", "cause"),
        Index("ix_alarms_state_rank", "state", "severity_rank", "id"),
        Index("ix_alarms_state_seen", "state", "last_seen_at", "id"),
    )


class DetectionFeedbackRow(Base):
    """An operator's false-positive verdict as it changes detection on one device: a
    subject allowed (``subject`` set) or a rule suppressed (``subject`` null) until
    ``until`` (null: until lifted)."""

    __tablename__ = "detection_feedback"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    device_id: Mapped[str] = mapped_column(
        ForeignKey("devices.id", ondelete="CASCADE"), index=True)
    rule_id: Mapped[str] = mapped_column(String(64))
    subject: Mapped[str | None] = mapped_column(String(300), nullable=True)
    until: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    alarm_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    note: Mapped[str] = mapped_column(Text, default="")
    created_by: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    lifted_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    lifted_by: Mapped[str | None] = mapped_column(String(200), nullable=True)


class DetectorStateRow(Base):
    """A device's detector state (features, rule streaks, learned models), encoded compact
    by ``fleetguard.detect``: what lets a restart go on without relearning or re-alarming."""

    __tablename__ = "detection_device_state"

    device_id: Mapped[str] = mapped_column(
        ForeignKey("devices.id", ondelete="CASCADE"), primary_key=True)
    state: Mapped[bytes] = mapped_column(LargeBinary)
    saved_at: Mapped[datetime] = mapped_column(UTCDateTime())
