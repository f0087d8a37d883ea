"""Errors of the pki package.

FleetError
├── InvalidRequestError
│   ├── CsrRejectedError              a certificate request that will not be signed
│   │   ├── MalformedCsrError         not a DER or PEM PKCS#10 request at all (garbage)
│   │   │   └── TruncatedCsrError     a request that stops before its declared end
│   │   ├── UnsupportedKeyError       a key type or curve fleetguard does not accept
│   │   ├── WeakKeyError              an accepted type, but too small (RSA < 2048)
│   │   └── WeakSignatureAlgorithmError  a request signed with SHA-1, MD5 or similar
│   ├── CsrTooLargeError              (also a PayloadTooLargeError) past the size bound
│   └── InvalidCertificateParametersError  a caller asked for an impossible certificate
├── UntrustedInputError
│   └── CsrSignatureError             the request's signature does not match its key:
│                                     no proof of possession
├── ConflictError
│   └── CaAlreadyExistsError          ``init_fleet_ca`` on a directory that has a CA
├── NotFoundError
│   └── CaNotFoundError               no CA in this directory (run ``fleetguard ca init``)
├── IntegrityViolationError
│   └── CaStateCorruptError           manifest, certificates and keys do not agree
├── ConfigurationError
│   ├── KeyBackendConfigError         PKCS#11 module, token, key label or PIN not usable
│   └── CaExpiredError                the active issuing CA is (nearly) expired: rotate
└── DependencyError
    └── KeyBackendError               the token failed to generate a key or to sign
"""

from __future__ import annotations

from fleetguard.core.errors import (
    ConfigurationError,
    ConflictError,
    DependencyError,
    IntegrityViolationError,
    InvalidRequestError,
    NotFoundError,
    PayloadTooLargeError,
    UntrustedInputError,
)


class CsrRejectedError(InvalidRequestError):
    code = "csr_rejected"


class MalformedCsrError(CsrRejectedError):
    code = "csr_malformed"


class TruncatedCsrError(MalformedCsrError):
    code = "csr_truncated"


class UnsupportedKeyError(CsrRejectedError):
    code = "csr_key_unsupported"


class WeakKeyError(CsrRejectedError):
    code = "csr_key_weak"


class WeakSignatureAlgorithmError(CsrRejectedError):
    code = "csr_signature_algorithm_weak"


class CsrTooLargeError(PayloadTooLargeError):
    code = "csr_too_large"


class InvalidCertificateParametersError(InvalidRequestError):
    code = "certificate_parameters_invalid"


class CsrSignatureError(UntrustedInputError):
    code = "csr_signature_invalid"


class CaAlreadyExistsError(ConflictError):
    code = "ca_exists"


class CaNotFoundError(NotFoundError):
    code = "ca_not_found"


class CaStateCorruptError(IntegrityViolationError):
    code = "ca_state_corrupt"


class KeyBackendConfigError(ConfigurationError):
    code = "key_backend_misconfigured"


class CaExpiredError(ConfigurationError):
    code = "ca_expired"


class KeyBackendError(DependencyError):
    code = "key_backend_failed"
