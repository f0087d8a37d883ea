"""The fleet's own PKI: a root CA, an online issuing CA, device and server certificates, CRLs.

Typical use::

    backend = EncryptedFileKeyBackend(load_master_key(settings))
    ca = init_fleet_ca(data_dir / "ca", backend)            # once (`fleetguard ca init`)
    ca = open_fleet_ca(data_dir / "ca", backend)            # every start after that
    issued = ca.issue_device_certificate(csr_pem, device_id)
    service = ca.issue_service_certificate(public_key, "fleetguard-platform")
    ca.publish_crls([Revocation(serial, revoked_at, RevocationReason.KEY_COMPROMISE)])

CA keys live in a :class:`KeyBackend`: sealed files under the master key
(:class:`EncryptedFileKeyBackend`) or a PKCS#11 token (:class:`Pkcs11KeyBackend`).
"""

from fleetguard.pki._backends import (
    CaSigningKey,
    EncryptedFileKeyBackend,
    KeyBackend,
    rewrap_sealed_ca_keys,
)
from fleetguard.pki._ca import FleetCA, init_fleet_ca, open_fleet_ca
from fleetguard.pki._crl import DEFAULT_CRL_LIFETIME
from fleetguard.pki._csr import MAX_CSR_BYTES, load_csr
from fleetguard.pki._hierarchy import DEFAULT_ISSUING_VALIDITY, DEFAULT_ROOT_VALIDITY
from fleetguard.pki._issuance import (
    DEFAULT_DEVICE_VALIDITY,
    DEFAULT_SERVER_VALIDITY,
    DEFAULT_SERVICE_VALIDITY,
)
from fleetguard.pki._pkcs11 import Pkcs11KeyBackend
from fleetguard.pki._x509 import (
    CLAIM_URI_PREFIX,
    DEVICE_URI_PREFIX,
    SERVICE_URI_PREFIX,
    certificate_sha256,
    claim_uri,
    device_uri,
    service_uri,
    spki_sha256,
)
from fleetguard.pki.models import (
    CaCertificate,
    CaRole,
    IssuedCertificate,
    IssuingCaStatus,
    KeyAlgorithm,
    KeyReference,
    PublishedCrls,
    Revocation,
    RevocationReason,
    SignedCrl,
)

__all__ = [
    "CLAIM_URI_PREFIX",
    "DEFAULT_CRL_LIFETIME",
    "DEFAULT_DEVICE_VALIDITY",
    "DEFAULT_ISSUING_VALIDITY",
    "DEFAULT_ROOT_VALIDITY",
    "DEFAULT_SERVER_VALIDITY",
    "DEFAULT_SERVICE_VALIDITY",
    "DEVICE_URI_PREFIX",
    "MAX_CSR_BYTES",
    "SERVICE_URI_PREFIX",
    "CaCertificate",
    "CaRole",
    "CaSigningKey",
    "EncryptedFileKeyBackend",
    "FleetCA",
    "IssuedCertificate",
    "IssuingCaStatus",
    "KeyAlgorithm",
    "KeyBackend",
    "KeyReference",
    "Pkcs11KeyBackend",
    "PublishedCrls",
    "Revocation",
    "RevocationReason",
    "SignedCrl",
    "certificate_sha256",
    "claim_uri",
    "device_uri",
    "init_fleet_ca",
    "load_csr",
    "open_fleet_ca",
    "rewrap_sealed_ca_keys",
    "service_uri",
    "spki_sha256",
]
