"""Device identity on top of the fleet PKI: enrollment, renewal, revocation, authentication."""

from fleetguard.identity.models import (
    CallerIdentity,
    ClaimBatch,
    DeviceCertificate,
    EnrolledVia,
    EnrollmentResult,
    ExpiringCertificate,
    ExpiringCertificates,
    IssuedClaim,
    SharedIdentityAlert,
)

__all__ = [
    "CallerIdentity",
    "ClaimBatch",
    "DeviceCertificate",
    "EnrolledVia",
    "EnrollmentResult",
    "ExpiringCertificate",
    "ExpiringCertificates",
    "IssuedClaim",
    "SharedIdentityAlert",
]
