from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum


class EnrolledVia(StrEnum):
    TOKEN = "token"  # noqa: S105 - a wire value
    CLAIM = "claim"
    RENEWAL = "renewal"


@dataclass(frozen=True, slots=True)
class EnrollmentResult:
    device_id: str
    serial_hex: str
    certificate_pem: str
    chain_pem: str
    ca_bundle_pem: str
    not_after: datetime


@dataclass(frozen=True, slots=True)
class DeviceCertificate:
    serial_hex: str
    device_id: str
    fingerprint_sha256: str
    spki_sha256: str
    not_before: datetime
    not_after: datetime
    enrolled_via: EnrolledVia
    revoked_at: datetime | None
    revocation_reason: str | None
    first_seen_at: datetime | None
    last_seen_at: datetime | None
    last_seen_from: str | None


@dataclass(frozen=True, slots=True)
class CallerIdentity:
    """Who is on the other end of a mutual-TLS connection to the device endpoint."""

    kind: str  # "device" or "claim"
    subject_id: str  # device id or claim batch id
    serial_hex: str


@dataclass(frozen=True, slots=True)
class ClaimBatch:
    batch_id: str
    name: str
    serials: int
    enrolled: int
    not_after: datetime
    revoked_at: datetime | None


@dataclass(frozen=True, slots=True)
class IssuedClaim:
    batch: ClaimBatch
    key_pem: str  # handed to the factory once; never stored
    certificate_pem: str
    ca_bundle_pem: str


@dataclass(frozen=True, slots=True)
class SharedIdentityAlert:
    """One certificate seen from several places within a short window."""

    serial_hex: str
    device_id: str
    sources: list[str]


@dataclass(frozen=True, slots=True)
class ExpiringCertificate:
    serial_hex: str
    device_id: str
    not_after: datetime


@dataclass(frozen=True, slots=True)
class ExpiringCertificates:
    """Every unrevoked certificate expiring in a window: the exact count, the soonest few."""

    count: int
    soonest: list[ExpiringCertificate]
