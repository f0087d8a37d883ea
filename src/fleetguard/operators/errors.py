"""Errors of the operators package.

    FleetError
    ├── AuthenticationError
    │   ├── LoginFailedError           wrong name, wrong password or disabled: one answer for all
    │   ├── MfaFailedError             a wrong, replayed or expired second factor
    │   └── InvalidCredentialError     an unknown, expired or revoked session or token
    ├── ValidationFailedError
    │   └── WeakPasswordError          the password policy said no, with its reason
    ├── RateLimitedError
    │   └── LockedOutError             too many failures for this account or address
    ├── NotFoundError
    │   └── OperatorNotFoundError
    └── ConflictError
        └── OperatorExistsError
"""

from fleetguard.core.errors import (
    AuthenticationError,
    ConflictError,
    NotFoundError,
    RateLimitedError,
    ValidationFailedError,
)


class LoginFailedError(AuthenticationError):
    code = "login_failed"


class MfaFailedError(AuthenticationError):
    code = "mfa_failed"


class InvalidCredentialError(AuthenticationError):
    code = "invalid_credentials"


class WeakPasswordError(ValidationFailedError):
    code = "weak_password"


class LockedOutError(RateLimitedError):
    code = "locked_out"


class OperatorNotFoundError(NotFoundError):
    code = "operator_not_found"


class OperatorExistsError(ConflictError):
    code = "operator_exists"
