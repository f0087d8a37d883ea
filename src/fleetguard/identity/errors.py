"""Errors of device identity: enrollment, renewal, revocation, device authentication.

    FleetError
    ├── AuthenticationError
    │   ├── EnrollmentTokenInvalidError   unknown, expired, used, or another device's token
    │   └── DeviceCertificateRejectedError  revoked, unknown or not a device certificate
    ├── PermissionDeniedError
    │   ├── DeviceNotTrustedError        the device is quarantined, suspended or decommissioned
    │   └── ClaimNotAllowedError         serial not on the batch's list, already enrolled,
    │                                   or a claim certificate used for anything but enrollment
    ├── ConflictError
    │   ├── KeyAlreadyBoundError         the CSR's key belongs to another certificate
    │   └── ClaimBatchExistsError        a claim batch of that name exists
    ├── NotFoundError
    │   └── CertificateNotFoundError
    └── ConfigurationError
        └── CaNotInitializedError
"""

from fleetguard.core.errors import (
    AuthenticationError,
    ConfigurationError,
    ConflictError,
    NotFoundError,
    PermissionDeniedError,
)


class EnrollmentTokenInvalidError(AuthenticationError):
    code = "enrollment_token_invalid"


class DeviceCertificateRejectedError(AuthenticationError):
    code = "device_certificate_rejected"


class DeviceNotTrustedError(PermissionDeniedError):
    code = "device_not_trusted"


class ClaimNotAllowedError(PermissionDeniedError):
    code = "claim_not_allowed"


class KeyAlreadyBoundError(ConflictError):
    code = "key_already_bound"


class CertificateNotFoundError(NotFoundError):
    code = "certificate_not_found"


class CaNotInitializedError(ConfigurationError):
    code = "ca_not_initialized"


class ClaimBatchExistsError(ConflictError):
    code = "claim_batch_exists"
