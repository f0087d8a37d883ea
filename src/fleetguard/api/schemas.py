"""Request and response models at the HTTP edge; they map to the services' dataclasses."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from fleetguard.core.errors import ValidationFailedError
from fleetguard.operators import ApiToken, Operator, Role

E = TypeVar("E", bound=StrEnum)


def optional_choice(kind: type[E], value: str | None, field: str) -> E | None:
    """A query parameter naming one of an enum's values: empty or absent is none, an
    unknown value a 422 listing the choices."""
    if not value:
        return None
    try:
        return kind(value)
    except ValueError:
        allowed = ", ".join(v.value for v in kind)
        raise ValidationFailedError(f"{field} must be one of {allowed}", field=field) from None


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=False)


class ErrorBody(BaseModel):
    code: str
    message: str
    field: str | None = None


class ErrorResponse(BaseModel):
    error: ErrorBody


class LoginRequest(StrictModel):
    username: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=256)


class MfaCodeRequest(StrictModel):
    challenge: str = Field(min_length=1, max_length=128)
    code: str = Field(min_length=1, max_length=32)


class ChallengeRequest(StrictModel):
    challenge: str = Field(min_length=1, max_length=128)


class OperatorOut(BaseModel):
    username: str
    role: Role
    disabled: bool
    mfa_enabled: bool
    created_at: datetime

    @classmethod
    def of(cls, op: Operator) -> OperatorOut:
        return cls(
            username=op.username, role=op.role, disabled=op.disabled,
            mfa_enabled=op.mfa_enabled, created_at=op.created_at,
        )


class LoginResponse(BaseModel):
    step: str
    challenge: str | None = None
    operator: OperatorOut | None = None
    csrf_token: str | None = None
    session_expires_at: datetime | None = None
    recovery_codes: list[str] | None = None


class MfaEnrollmentResponse(BaseModel):
    secret: str
    otpauth_uri: str
    qr_svg: str


class OperatorCreate(StrictModel):
    username: str = Field(min_length=2, max_length=64)
    role: Role
    password: str = Field(min_length=1, max_length=256)


class PasswordChange(StrictModel):
    current_password: str = Field(min_length=1, max_length=256)
    new_password: str = Field(min_length=1, max_length=256)


class TokenCreate(StrictModel):
    name: str = Field(min_length=1, max_length=100)
    role: Role | None = None
    ttl_days: int = Field(default=90, ge=1, le=365)


class TokenOut(BaseModel):
    token_id: str
    name: str
    role: Role
    operator: str
    created_at: datetime
    expires_at: datetime
    revoked_at: datetime | None
    last_used_at: datetime | None
    last_used_from: str | None

    @classmethod
    def of(cls, t: ApiToken) -> TokenOut:
        return cls(
            token_id=t.token_id, name=t.name, role=t.role, operator=t.operator,
            created_at=t.created_at, expires_at=t.expires_at, revoked_at=t.revoked_at,
            last_used_at=t.last_used_at, last_used_from=t.last_used_from,
        )


class TokenIssued(BaseModel):
    token: str
    info: TokenOut


class AuditEntryOut(BaseModel):
    seq: int
    at: datetime
    actor: str
    action: str
    target: str
    details: dict[str, Any]
    prev_hash: str
    entry_hash: str


class AuditPage(BaseModel):
    entries: list[AuditEntryOut]
    next_cursor: int | None


class ChainHeadOut(BaseModel):
    seq: int
    entry_hash: str


class ChainVerificationOut(BaseModel):
    ok: bool
    entries_checked: int
    head: ChainHeadOut
    first_bad_seq: int | None
    problems: list[str]


class DeviceOut(BaseModel):
    id: str
    name: str
    serial: str | None
    hardware_model: str | None
    vendor: str | None
    labels: dict[str, str]
    state: str
    firmware_version: str | None
    last_seen_at: datetime | None
    addresses: list[str]
    groups: list[str]
    created_at: datetime
    updated_at: datetime


class DeviceCreate(StrictModel):
    name: str = Field(min_length=1, max_length=200)
    serial: str | None = Field(default=None, max_length=128)
    hardware_model: str | None = Field(default=None, max_length=200)
    vendor: str | None = Field(default=None, max_length=200)
    firmware_version: str | None = Field(default=None, max_length=100)
    labels: dict[str, str] = Field(default_factory=dict)


class DeviceUpdate(StrictModel):
    name: str | None = Field(default=None, min_length=1, max_length=200)
    serial: str | None = Field(default=None, max_length=128)
    hardware_model: str | None = Field(default=None, max_length=200)
    vendor: str | None = Field(default=None, max_length=200)
    firmware_version: str | None = Field(default=None, max_length=100)
    labels: dict[str, str] | None = None
    addresses: list[str] | None = Field(default=None, max_length=32)


class DevicePageOut(BaseModel):
    devices: list[DeviceOut]
    next_cursor: str | None


class StateChange(StrictModel):
    state: str = Field(description="active, quarantined or suspended")
    reason: str = Field(default="", max_length=500)


class Reason(StrictModel):
    reason: str = Field(default="", max_length=500)


class EnrollmentTokenOut(BaseModel):
    token: str
    expires_at: datetime
    root_fingerprint: str


class TokenTtl(StrictModel):
    ttl_hours: int = Field(default=168, ge=1, le=2160)


class GroupCreate(StrictModel):
    name: str = Field(min_length=1, max_length=100)
    kind: str = Field(description="static or dynamic")
    label_query: str | None = Field(default=None, max_length=500)


class GroupOut(BaseModel):
    name: str
    kind: str
    label_query: str | None
    created_at: datetime


class CertificateOut(BaseModel):
    serial: str
    device_id: str
    fingerprint_sha256: str
    spki_sha256: str
    not_before: datetime
    not_after: datetime
    enrolled_via: str
    revoked_at: datetime | None
    revocation_reason: str | None
    first_seen_at: datetime | None
    last_seen_at: datetime | None
    last_seen_from: str | None


class RevokeRequest(StrictModel):
    reason: str = Field(default="unspecified")


class SharedIdentityOut(BaseModel):
    serial: str
    device_id: str
    sources: list[str]


class IssuingCaOut(BaseModel):
    ca_id: str
    status: str
    not_after: datetime
    key_id: str


class CaOut(BaseModel):
    fleet_name: str
    root_fingerprint: str
    root_not_after: datetime
    issuing_cas: list[IssuingCaOut]
    crl_next_update: datetime | None


class ClaimBatchCreate(StrictModel):
    name: str = Field(min_length=1, max_length=100)
    serials: list[str] = Field(min_length=1, max_length=100_000)
    validity_days: int = Field(default=365, ge=1, le=398)


class ClaimBatchOut(BaseModel):
    batch_id: str
    name: str
    serials: int
    enrolled: int
    not_after: datetime
    revoked_at: datetime | None


class ClaimIssued(BaseModel):
    batch: ClaimBatchOut
    claim_key_pem: str
    claim_certificate_pem: str
    ca_bundle_pem: str


class ImportResult(BaseModel):
    imported: int
