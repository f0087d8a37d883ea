"""Identity's tables: device certificates and their use, enrollment tokens, claim batches."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from fleetguard.store.base import Base, UTCDateTime


class DeviceCertificateRow(Base):
    __tablename__ = "device_certificates"

    serial_hex: Mapped[str] = mapped_column(String(64), primary_key=True)
    device_id: Mapped[str] = mapped_column(ForeignKey("devices.id"), index=True)
    issuer_key_id: Mapped[str] = mapped_column(String(64))
    spki_sha256: Mapped[str] = mapped_column(String(64), index=True, unique=True)
    fingerprint_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    not_before: Mapped[datetime] = mapped_column(UTCDateTime())
    not_after: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    certificate_pem: Mapped[str] = mapped_column(Text)
    enrolled_via: Mapped[str] = mapped_column(String(20))  # token | claim | renewal
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    revocation_reason: Mapped[str | None] = mapped_column(String(40), nullable=True)
    first_seen_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    last_seen_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    last_seen_from: Mapped[str | None] = mapped_column(String(64), nullable=True)


class CertificateUseRow(Base):
    """Where each certificate was used from, to report one identity in two places."""

    __tablename__ = "certificate_uses"

    serial_hex: Mapped[str] = mapped_column(
        ForeignKey("device_certificates.serial_hex", ondelete="CASCADE"), primary_key=True
    )
    source: Mapped[str] = mapped_column(String(64), primary_key=True)
    first_seen_at: Mapped[datetime] = mapped_column(UTCDateTime())
    last_seen_at: Mapped[datetime] = mapped_column(UTCDateTime())
    uses: Mapped[int] = mapped_column(default=0)


class EnrollmentTokenRow(Base):
    __tablename__ = "enrollment_tokens"

    id: Mapped[int] = mapped_column(primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    device_id: Mapped[str] = mapped_column(
        ForeignKey("devices.id", ondelete="CASCADE"), index=True
    )
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)


class ClaimBatchRow(Base):
    __tablename__ = "claim_batches"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    claim_serial_hex: Mapped[str] = mapped_column(String(64), unique=True)
    not_after: Mapped[datetime] = mapped_column(UTCDateTime())
    labels: Mapped[str] = mapped_column(Text, default="{}")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)


class ClaimSerialRow(Base):
    __tablename__ = "claim_serials"

    batch_id: Mapped[str] = mapped_column(
        ForeignKey("claim_batches.id", ondelete="CASCADE"), primary_key=True
    )
    serial: Mapped[str] = mapped_column(String(128), primary_key=True)
    device_id: Mapped[str | None] = mapped_column(ForeignKey("devices.id"), nullable=True)
    enrolled_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)

    __table_args__ = (UniqueConstraint("serial", name="uq_claim_serials_serial_only"),)
