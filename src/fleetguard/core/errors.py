"""The one error hierarchy of fleetguard.

    FleetError
    ├── InvalidRequestError      the caller asked for something malformed or impossible (4xx)
    │   ├── ValidationFailedError    a field is missing or has the wrong type or value
    │   └── PayloadTooLargeError
    ├── AuthenticationError      who you are could not be established (401)
    ├── PermissionDeniedError    you are known, but not allowed (403)
    ├── NotFoundError            (404)
    ├── ConflictError            the state does not allow it, e.g. a name taken (409)
    ├── RateLimitedError         slow down; carries retry_after seconds (429)
    ├── UntrustedInputError      remote data failed an integrity or signature check
    ├── IntegrityViolationError  stored data was tampered with (e.g. the audit chain)
    ├── ConfigurationError       the installation is not set up as required
    └── DependencyError          a database, broker or other service failed

Each class has a stable ``code`` that the API and the CLI show to people and
scripts; codes never change once published.
"""

from __future__ import annotations

#: How much of a caller's value an error message may quote.
EXCERPT_CHARS = 64


def excerpt(value: str, limit: int = EXCERPT_CHARS) -> str:
    """The caller's value, quoted and cut to ``limit`` characters, for an error message.

    An error names the offending token and no more: a message that echoed a whole value
    could carry back whatever the server was tricked into reading.
    """
    if len(value) <= limit:
        return repr(value)
    return repr(value[:limit]) + f"... ({len(value)} characters)"



class FleetError(Exception):
    """Root of every error fleetguard raises across a package boundary."""

    code = "error"
    http_status = 500

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code


class InvalidRequestError(FleetError):
    code = "invalid_request"
    http_status = 400


class ValidationFailedError(InvalidRequestError):
    code = "validation_failed"
    http_status = 422

    def __init__(self, message: str, *, field: str | None = None, code: str | None = None) -> None:
        super().__init__(message, code=code)
        self.field = field


class PayloadTooLargeError(InvalidRequestError):
    code = "payload_too_large"
    http_status = 413


class AuthenticationError(FleetError):
    code = "authentication_failed"
    http_status = 401


class PermissionDeniedError(FleetError):
    code = "permission_denied"
    http_status = 403


class NotFoundError(FleetError):
    code = "not_found"
    http_status = 404


class ConflictError(FleetError):
    code = "conflict"
    http_status = 409


class RateLimitedError(FleetError):
    code = "rate_limited"
    http_status = 429

    def __init__(self, message: str, *, retry_after: float, code: str | None = None) -> None:
        super().__init__(message, code=code)
        self.retry_after = retry_after


class UntrustedInputError(FleetError):
    code = "untrusted_input"
    http_status = 400


class IntegrityViolationError(FleetError):
    code = "integrity_violation"
    http_status = 500


class ConfigurationError(FleetError):
    code = "configuration_error"
    http_status = 500


class DependencyError(FleetError):
    code = "dependency_unavailable"
    http_status = 503
