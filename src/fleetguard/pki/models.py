"""Plain data of the pki package: what callers pass in and get back."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.serialization import Encoding

from fleetguard.core.pki_enums import KeyAlgorithm as KeyAlgorithm
from fleetguard.core.pki_enums import RevocationReason as RevocationReason


class CaRole(StrEnum):
    ROOT = "root"
    ISSUING = "issuing"


class IssuingCaStatus(StrEnum):
    """``active`` signs new certificates; ``retired`` only signs CRLs until it expires."""

    ACTIVE = "active"
    RETIRED = "retired"


@dataclass(frozen=True, slots=True)
class KeyReference:
    """Where a CA private key lives, as recorded in the CA manifest.

    ``backend`` is ``"file"`` (``locator``: the sealed key's path relative to the CA
    directory) or ``"pkcs11"`` (``locator``: the key's label in the token).
    """

    backend: str
    locator: str


@dataclass(frozen=True, slots=True)
class CaCertificate:
    """One CA of the fleet: the root or one issuing CA, with where its key lives."""

    ca_id: str
    role: CaRole
    certificate: x509.Certificate
    key: KeyReference
    key_algorithm: KeyAlgorithm
    status: IssuingCaStatus | None = None  # None for the root
    created_at: datetime | None = None
    # Derived once: every enrollment reads both (the token's pin, the chain, the bundle).
    _fingerprint: str = field(init=False, repr=False, compare=False)
    _pem: bytes = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_fingerprint",
                           self.certificate.fingerprint(hashes.SHA256()).hex())
        object.__setattr__(self, "_pem", self.certificate.public_bytes(Encoding.PEM))

    @property
    def key_id(self) -> str:
        """Subject key identifier, hex: what a child's authority key id points at."""
        ext = self.certificate.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
        return ext.value.digest.hex()

    @property
    def fingerprint_sha256(self) -> str:
        return self._fingerprint

    @property
    def not_after(self) -> datetime:
        return self.certificate.not_valid_after_utc

    @property
    def pem(self) -> bytes:
        return self._pem


@dataclass(frozen=True, slots=True)
class IssuedCertificate:
    """A certificate the fleet CA signed, with what the caller needs to record.

    ``spki_sha256`` is the SHA-256 of the subject public key info: store it, and
    refuse a request whose key is already bound to another device.
    """

    certificate: x509.Certificate
    serial_number: int
    fingerprint_sha256: str
    spki_sha256: str
    not_before: datetime
    not_after: datetime
    issuer_ca_id: str
    issuer_key_id: str
    certificate_pem: bytes
    chain_pem: bytes  # this certificate, then its issuing CA: what a TLS client presents
    device_id: uuid.UUID | None = None

    @property
    def serial_hex(self) -> str:
        return format(self.serial_number, "x")


@dataclass(frozen=True, slots=True)
class Revocation:
    """One revoked certificate for a CRL.

    ``issuer_key_id`` (hex, ``IssuedCertificate.issuer_key_id``) puts the entry on the
    CRL of that CA only; without it the entry goes on every issuing CA's CRL.
    """

    serial_number: int
    revoked_at: datetime
    reason: RevocationReason = RevocationReason.UNSPECIFIED
    issuer_key_id: str | None = None


@dataclass(frozen=True, slots=True)
class SignedCrl:
    issuer_ca_id: str
    issuer_key_id: str
    crl: x509.CertificateRevocationList
    crl_number: int

    @property
    def pem(self) -> bytes:
        return self.crl.public_bytes(Encoding.PEM)

    @property
    def der(self) -> bytes:
        return self.crl.public_bytes(Encoding.DER)

    @property
    def next_update(self) -> datetime:
        value = self.crl.next_update_utc
        assert value is not None  # every CRL fleetguard signs has one
        return value


@dataclass(frozen=True, slots=True)
class PublishedCrls:
    """CRLs written to disk: one PEM and one DER file per CA, and all PEMs in one file.

    ``combined_pem`` is what ``openssl verify -CRLfile`` and Mosquitto's ``crlfile`` take.
    """

    directory: Path
    crls: list[SignedCrl]
    combined_pem: Path
    files: list[Path] = field(default_factory=list)
