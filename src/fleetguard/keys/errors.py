"""Errors of the keys package.

    FleetError
    ├── ConfigurationError
    │   └── MasterKeyMissingError   no master key file and no FLEETGUARD_MASTER_KEY
    └── IntegrityViolationError
        └── SecretDecryptionError   a sealed secret does not open under this master key
"""

from fleetguard.core.errors import ConfigurationError, IntegrityViolationError


class MasterKeyMissingError(ConfigurationError):
    code = "master_key_missing"


class SecretDecryptionError(IntegrityViolationError):
    code = "secret_decryption_failed"
