"""Errors of the auditlog package.

    FleetError
    ├── ConfigurationError
    │   └── AuditKeyMissingError     an entry was to be written or checked, but the database
    │                                was opened without the installation's master key
    └── UntrustedInputError
        └── SignedHeadInvalidError   an exported head is malformed, its signature does not
                                     hold, or it is signed by a key nobody trusts
"""

from fleetguard.core.errors import ConfigurationError, UntrustedInputError


class AuditKeyMissingError(ConfigurationError):
    code = "audit_key_missing"


class SignedHeadInvalidError(UntrustedInputError):
    code = "signed_head_invalid"
