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
    ├── PermissionDeniedError
    │   └── CredentialTooWideError     a credential asked to mint a wider or longer-lived one
    ├── NotFoundError
    │   └── OperatorNotFoundError
    └── ConflictError
        ├── OperatorExistsError
        └── LastAdminError             the change would leave no enabled admin
"""

from fleetguard.core.errors import (
    AuthenticationError,
    ConflictError,
    NotFoundError,
    PermissionDeniedError,
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


class CredentialTooWideError(PermissionDeniedError):
    code = "credential_too_wide"


class LastAdminError(ConflictError):
    code = "last_admin"
