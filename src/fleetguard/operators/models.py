"""Roles, permissions and the values the operators service hands out."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum


class Role(StrEnum):
    ADMIN = "admin"
    OPERATOR = "operator"
    AUDITOR = "auditor"


class Permission(StrEnum):
    """What a route may ask of its caller. Wire values are stable."""

    OPERATORS_READ = "operators:read"
    OPERATORS_WRITE = "operators:write"
    TOKENS_READ_OWN = "tokens:read-own"
    TOKENS_WRITE_OWN = "tokens:write-own"
    TOKENS_ADMIN = "tokens:admin"
    AUDIT_READ = "audit:read"
    METRICS_READ = "metrics:read"
    SELF = "self"
    DEVICES_READ = "devices:read"
    DEVICES_WRITE = "devices:write"
    REPORTS_READ = "reports:read"
    PKI_ADMIN = "pki:admin"
    ALARMS_READ = "alarms:read"
    ALARMS_TRIAGE = "alarms:triage"  # acknowledge, resolve, give a verdict
    DETECTION_RULES_WRITE = "detection-rules:write"  # activate a rule set
    NOTIFICATIONS_WRITE = "notifications:write"  # webhook and syslog destinations


_AUDITOR = frozenset(
    {
        Permission.SELF,
        Permission.TOKENS_READ_OWN,
        Permission.TOKENS_WRITE_OWN,
        Permission.AUDIT_READ,
        Permission.DEVICES_READ,
        Permission.REPORTS_READ,
        Permission.METRICS_READ,
        Permission.ALARMS_READ,
    }
)
_OPERATOR = _AUDITOR | {Permission.DEVICES_WRITE, Permission.ALARMS_TRIAGE}
_ADMIN = frozenset(Permission)

ROLE_PERMISSIONS: dict[Role, frozenset[Permission]] = {
    Role.ADMIN: _ADMIN,
    Role.OPERATOR: frozenset(_OPERATOR),
    Role.AUDITOR: _AUDITOR,
}

# Roles that must pass a second factor before they get a session.
MFA_REQUIRED_ROLES = frozenset({Role.ADMIN})

ROLE_RANK = {Role.AUDITOR: 0, Role.OPERATOR: 1, Role.ADMIN: 2}


def role_allows(role: Role, permission: Permission) -> bool:
    return permission in ROLE_PERMISSIONS[role]


@dataclass(frozen=True, slots=True)
class Operator:
    id: int
    username: str
    role: Role
    disabled: bool
    mfa_enabled: bool
    created_at: datetime


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: an operator through a session or a token, with the effective role."""

    operator_id: int
    username: str
    role: Role
    via: str  # "session" or "token:<token id>"
    session_id: int | None = None
    # When the credential behind this request stops working: a token's expiry. None for a
    # session, the operator's own login (password and, for admins, a second factor).
    credential_expires_at: datetime | None = None

    @property
    def actor(self) -> str:
        return f"operator:{self.username}"

    def can(self, permission: Permission) -> bool:
        return role_allows(self.role, permission)


class LoginStep(StrEnum):
    DONE = "done"
    MFA_REQUIRED = "mfa_required"
    MFA_ENROLLMENT_REQUIRED = "mfa_enrollment_required"


@dataclass(frozen=True, slots=True)
class LoginResult:
    step: LoginStep
    operator: Operator
    challenge: str | None = None
    session_token: str | None = None
    csrf_token: str | None = None
    session_expires_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class MfaEnrollment:
    secret_base32: str
    otpauth_uri: str
    qr_svg: str


@dataclass(frozen=True, slots=True)
class ApiToken:
    token_id: str
    name: str
    role: Role
    operator: str
    created_at: datetime
    expires_at: datetime
    revoked_at: datetime | None
    last_used_at: datetime | None
    last_used_from: str | None


@dataclass(frozen=True, slots=True)
class IssuedToken:
    token: str  # shown once, never stored
    info: ApiToken
