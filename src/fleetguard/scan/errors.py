"""Errors of the scan package.

    FleetError
    ├── ValidationFailedError
    │   ├── InvalidTargetError        a target is not an address, CIDR, range, hostname or @file
    │   ├── InvalidPortSpecError      a --ports value cannot be parsed or is out of range
    │   ├── ScanScopeTooLargeError    the targets expand to more addresses than allowed
    │   └── InvalidScanOptionError    a limit (timeout, rate, concurrency, ...) is out of range
    └── ConfigurationError
        └── CredentialListError       the shipped or given default-credential list is unreadable

Every error here is the caller's or the installation's; a device that misbehaves never raises:
it becomes a port state, a note or a finding in the report.
"""

from __future__ import annotations

from fleetguard.core.errors import ConfigurationError, ValidationFailedError


class InvalidTargetError(ValidationFailedError):
    code = "invalid_target"


class InvalidPortSpecError(ValidationFailedError):
    code = "invalid_port_spec"


class ScanScopeTooLargeError(ValidationFailedError):
    code = "scan_scope_too_large"


class InvalidScanOptionError(ValidationFailedError):
    code = "invalid_scan_option"


class CredentialListError(ConfigurationError):
    code = "credential_list_invalid"


__all__ = [
    "CredentialListError",
    "InvalidPortSpecError",
    "InvalidScanOptionError",
    "InvalidTargetError",
    "ScanScopeTooLargeError",
]
