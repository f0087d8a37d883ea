"""Registry's tables: devices, their labels and groups."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from fleetguard.store.base import Base, UTCDateTime


class DeviceRow(Base):
    __tablename__ = "devices"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    name: Mapped[str] = mapped_column(String(200), index=True)
    serial: Mapped[str | None] = mapped_column(String(128), unique=True, nullable=True)
    hardware_model: Mapped[str | None] = mapped_column(String(200), nullable=True)
    vendor: Mapped[str | None] = mapped_column(String(200), nullable=True, index=True)
    labels: Mapped[str] = mapped_column(Text, default="{}")  # JSON object of str -> str
    state: Mapped[str] = mapped_column(String(20), index=True)
    firmware_version: Mapped[str | None] = mapped_column(String(100), nullable=True)
    last_seen_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    addresses: Mapped[str] = mapped_column(Text, default="[]")  # JSON list of str
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class DeviceLabelRow(Base):
    """Labels again, one row each, so label queries are indexed lookups."""

    __tablename__ = "device_labels"

    device_id: Mapped[str] = mapped_column(
        ForeignKey("devices.id", ondelete="CASCADE"), primary_key=True
    )
    key: Mapped[str] = mapped_column(String(63), primary_key=True)
    value: Mapped[str] = mapped_column(String(200))

    __table_args__ = (Index("ix_device_labels_key_value", "key", "value"),)


class DeviceAddressRow(Base):
    """Addresses again, one row each, so the devices at an address are an indexed lookup
    (each scan's ingestion asks for the addresses it saw)."""

    __tablename__ = "device_addresses"

    device_id: Mapped[str] = mapped_column(
        ForeignKey("devices.id", ondelete="CASCADE"), primary_key=True
    )
    address: Mapped[str] = mapped_column(String(64), primary_key=True)

    __table_args__ = (Index("ix_device_addresses_address", "address"),)


class DeviceGroupRow(Base):
    __tablename__ = "device_groups"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    kind: Mapped[str] = mapped_column(String(10))  # static | dynamic
    label_query: Mapped[str | None] = mapped_column(String(500), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class DeviceGroupMemberRow(Base):
    __tablename__ = "device_group_members"

    group_id: Mapped[int] = mapped_column(
        ForeignKey("device_groups.id", ondelete="CASCADE"), primary_key=True
    )
    device_id: Mapped[str] = mapped_column(
        ForeignKey("devices.id", ondelete="CASCADE"), primary_key=True, index=True
    )
