"""Request and response models at the HTTP edge; they map to the services' dataclasses."""

from __future__ import annotations

import ipaddress
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Literal, TypeVar

from fastapi import Body
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    WithJsonSchema,
)

from fleetguard.core.errors import ValidationFailedError
from fleetguard.operators import ApiToken, Operator, Role
from fleetguard.pki import RevocationReason

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


def _json_integer(value: object) -> object:
    """An integer as JSON Schema has it: a number with no fraction (3 or 3.0), never a
    string nor a boolean (which the lax default would take for 1)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError("must be an integer")
    if isinstance(value, float):
        if not value.is_integer():
            raise ValueError("must be an integer")
        return int(value)
    return value


#: ``integer`` in request bodies (use pydantic's StrictFloat and StrictBool for the others).
JSON_INTEGER = BeforeValidator(_json_integer)
JsonInt = Annotated[int, JSON_INTEGER]
# A bounded JsonInt that may also be null is ``Annotated[int, Field(ge=..), JSON_INTEGER]``:
# ``Annotated[JsonInt, Field(ge=..)]`` in a union publishes pydantic's raw "ge", not "minimum".


class StrictModel(BaseModel):
    """A request body: unknown fields are refused. Numbers and booleans are JsonInt,
    StrictFloat and StrictBool, so that "1" or true is not taken for a number, nor 1 for a
    boolean: what the schema says (integer, number, boolean) is what is accepted."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=False)


class ErrorBody(BaseModel):
    code: str = Field(description="stable, machine-readable, e.g. validation_failed")
    message: str = Field(description="for people")
    field: str | None = Field(default=None, description="the parameter or body field at fault")


class ErrorResponse(BaseModel):
    """Every error of the API: ``{"error": {"code", "message", "field"?}}``."""

    error: ErrorBody


#: What each error status of the API means; ``error_responses`` documents them on routes.
ERROR_STATUSES: dict[int, str] = {
    400: "Bad request: the request itself is malformed (a Content-Length that is not a "
         "number; or not valid HTTP, e.g. a control character in a header, which the HTTP "
         "server answers itself, in text/plain)",
    401: "Not authenticated: no credentials, or a token or session that is invalid, "
         "expired or revoked (a failed login step too)",
    403: "Not allowed: the caller's role, or the token's scope and lifetime, does not "
         "cover this",
    404: "Not found: the resource the path names, or one the request refers to",
    409: "Conflict with the current state: it exists already, or the change is not "
         "allowed from the state it is in",
    413: "Request body too large",
    422: "Invalid input: a parameter or the body fails validation (validation_failed, "
         "malformed_json, ...); field names the part at fault",
    429: "Too many requests (failed logins, running scans); retry after Retry-After seconds",
}


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """``responses=`` for routes and routers: the error statuses given, each with the
    error body's schema."""
    responses: dict[int | str, dict[str, Any]] = {
        status: {"model": ErrorResponse, "description": ERROR_STATUSES[status]}
        for status in statuses
    }
    if 400 in responses:
        responses[400]["content"] = {"text/plain": {"schema": {"type": "string"}}}
    return responses


#: What every route may answer, its own errors aside: a request that is not valid HTTP.
PROTOCOL_ERRORS = (400,)


# --- text the services accept ---------------------------------------------------------
# The services strip and check what they are given; the models here state the same rules
# (a little stricter where a rule cannot be written as a pattern: only ASCII white space
# around the text, and lengths before stripping), so that the published schema says what
# the server takes, and whatever it does not say is refused here with a 422 naming the
# field.

#: Tabs, line ends and spaces, which the services strip from either end.
_ENDS = r"[\t\n\x0b\x0c\r ]*"
#: No control character (U+0000-U+001F) but in what is stripped from either end.
PRINTABLE = rf"^{_ENDS}[^\x00-\x1f]*{_ENDS}$"
#: Printable, and something visible in it (the services refuse a blank name).
VISIBLE = rf"^{_ENDS}[^\x00-\x1f]*[^\s\x00-\x1f][^\x00-\x1f]*{_ENDS}$"
#: Label keys and values, as fleetguard.registry checks them.
LABEL_KEY = r"^[a-z0-9]([a-z0-9._/-]{0,61}[a-z0-9])?$"
LABEL_VALUE = r"^[A-Za-z0-9._:/@+ -]{0,200}$"
_KEY = r"[a-z0-9](?:[a-z0-9._/-]{0,61}[a-z0-9])?"
_REQUIREMENT = _KEY + r"(?:!?=[A-Za-z0-9._:/@+ -]{0,200})?"
#: A label query: ``key=value``, ``key!=value`` or ``key``, comma-separated.
LABEL_QUERY = rf"^{_REQUIREMENT}(?:,{_REQUIREMENT})*$"

Name = Annotated[str, Field(min_length=1, max_length=200, pattern=VISIBLE)]
LabelKey = Annotated[str, Field(min_length=1, max_length=63, pattern=LABEL_KEY)]
LabelValue = Annotated[str, Field(max_length=200, pattern=LABEL_VALUE)]
Labels = Annotated[dict[LabelKey, LabelValue], Field(max_length=64), WithJsonSchema({
    # What pydantic would write (patternProperties) lets other keys through; this does not.
    "type": "object", "maxProperties": 64,
    "propertyNames": {"type": "string", "minLength": 1, "maxLength": 63, "pattern": LABEL_KEY},
    "additionalProperties": {"type": "string", "maxLength": 200, "pattern": LABEL_VALUE},
})]
LabelQuery = Annotated[str, Field(
    min_length=1, max_length=500, pattern=LABEL_QUERY,
    description="key=value, key!=value or key, comma-separated; all must hold",
)]


def _ip_address(value: str) -> str:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        raise ValueError("not an IP address") from None
    return value


IpAddress = Annotated[str, AfterValidator(_ip_address), WithJsonSchema(
    {"type": "string", "anyOf": [{"format": "ipv4"}, {"format": "ipv6"}]}
)]


def _text(max_length: int) -> Any:
    """An optional text field: absent, null, or printable up to ``max_length``."""
    return Field(default=None, max_length=max_length, pattern=PRINTABLE)


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
    username: str = Field(min_length=2, max_length=64, pattern=r"^[A-Za-z0-9._-]{2,64}$")
    role: Role
    password: str = Field(min_length=1, max_length=256)


class PasswordChange(StrictModel):
    current_password: str = Field(min_length=1, max_length=256)
    new_password: str = Field(min_length=1, max_length=256)


class TokenCreate(StrictModel):
    name: str = Field(min_length=1, max_length=100, pattern=VISIBLE)
    role: Role | None = None
    ttl_days: JsonInt = Field(default=90, ge=1, le=365)


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
    name: Name
    serial: str | None = _text(128)
    hardware_model: str | None = _text(200)
    vendor: str | None = _text(200)
    firmware_version: str | None = _text(100)
    labels: Labels = Field(default_factory=dict)


class DeviceUpdate(StrictModel):
    name: Name | None = None
    serial: str | None = _text(128)
    hardware_model: str | None = _text(200)
    vendor: str | None = _text(200)
    firmware_version: str | None = _text(100)
    labels: Labels | None = None
    addresses: list[IpAddress] | None = Field(default=None, max_length=32)


class DevicePageOut(BaseModel):
    devices: list[DeviceOut]
    next_cursor: str | None


class StateChange(StrictModel):
    state: Literal["active", "quarantined", "suspended"]
    reason: str = Field(default="", max_length=500)


class Reason(StrictModel):
    reason: str = Field(default="", max_length=500)


class EnrollmentTokenOut(BaseModel):
    token: str
    expires_at: datetime
    root_fingerprint: str


class TokenTtl(StrictModel):
    ttl_hours: JsonInt = Field(default=168, ge=1, le=2160)


class StaticGroupCreate(StrictModel):
    """A group whose members are added and removed one by one."""

    name: str = Field(min_length=1, max_length=100, pattern=VISIBLE)
    kind: Literal["static"]
    label_query: None = None


class DynamicGroupCreate(StrictModel):
    """A group of every device whose labels match its query."""

    name: str = Field(min_length=1, max_length=100, pattern=VISIBLE)
    kind: Literal["dynamic"]
    label_query: LabelQuery


GroupCreate = Annotated[StaticGroupCreate | DynamicGroupCreate, Body(discriminator="kind")]


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
    reason: RevocationReason = RevocationReason.UNSPECIFIED


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
    name: str = Field(min_length=1, max_length=100, pattern=VISIBLE)
    serials: list[Annotated[str, Field(min_length=1, max_length=128, pattern=VISIBLE)]] = Field(
        min_length=1, max_length=100_000)
    validity_days: JsonInt = Field(default=365, ge=1, le=398)


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
