"""Operators: who may use the platform, how they prove it, and what each role may do."""

from fleetguard.operators.models import (
    ROLE_PERMISSIONS,
    ApiToken,
    IssuedToken,
    LoginResult,
    LoginStep,
    MfaEnrollment,
    Operator,
    Permission,
    Principal,
    Role,
)

__all__ = [
    "ROLE_PERMISSIONS",
    "ApiToken",
    "IssuedToken",
    "LoginResult",
    "LoginStep",
    "MfaEnrollment",
    "Operator",
    "Permission",
    "Principal",
    "Role",
]
