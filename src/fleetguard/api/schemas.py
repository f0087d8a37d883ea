"""Request and response models at the HTTP edge; they map to the services' dataclasses."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from fleetguard.operators import ApiToken, Operator, Role


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
