"""Notifications: destinations (webhooks, syslog), the events published, and the outbox of
deliveries to make, one row per event and destination.

Owned by :mod:`fleetguard.notify`.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    Boolean,
    ForeignKey,
    Index,
    Integer,
    SmallInteger,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from fleetguard.store.base import Base, UTCDateTime


class NotificationDestinationRow(Base):
    __tablename__ = "notification_destinations"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    kind: Mapped[str] = mapped_column(String(16))  # webhook | syslog
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    min_severity_rank: Mapped[int] = mapped_column(SmallInteger)
    # JSON of the kind's settings (url and flags, or host, port, transport...); no secret.
    settings: Mapped[str] = mapped_column(Text)
    # The webhook's HMAC secret, sealed in the secrets table (keys.stored).
    secret_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    created_by: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())
    secret_rotated_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)


class NotificationEventRow(Base):
    """An event as published, kept while a delivery of it is recorded."""

    __tablename__ = "notification_events"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    kind: Mapped[str] = mapped_column(String(64))
    severity_rank: Mapped[int] = mapped_column(SmallInteger)
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    payload: Mapped[str] = mapped_column(Text)  # JSON of the whole event
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class OutboxRow(Base):
    """One delivery to make (or made) of one event to one destination."""

    __tablename__ = "notification_outbox"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    destination_id: Mapped[str] = mapped_column(
        ForeignKey("notification_destinations.id", ondelete="CASCADE")
    )
    event_id: Mapped[str] = mapped_column(
        ForeignKey("notification_events.id", ondelete="CASCADE"), index=True
    )
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime())  # the event's, for order
    state: Mapped[str] = mapped_column(String(10))  # pending | delivered | failed
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime())
    # A worker that claimed the row holds it until then (two servers never send it twice).
    leased_until: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    last_error: Mapped[str | None] = mapped_column(String(500), nullable=True)
    last_status: Mapped[int | None] = mapped_column(Integer, nullable=True)
    test: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)

    __table_args__ = (
        UniqueConstraint("destination_id", "event_id", name="uq_notification_outbox_delivery"),
        # The head of each destination's queue: its oldest pending event.
        Index("ix_notification_outbox_queue", "destination_id", "state", "occurred_at", "id"),
    )
