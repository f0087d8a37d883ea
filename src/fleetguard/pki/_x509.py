"""Certificate and CRL templates of the fleet CA, built with ``cryptography``."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes
from cryptography.x509.oid import NameOID

from fleetguard.pki._backends import CaPublicKey, CaSigningKey
from fleetguard.pki.models import Revocation, RevocationReason

#: Certificates start this long before "now", for devices whose clocks run a little late.
BACKDATE = timedelta(minutes=5)

DEVICE_URI_PREFIX = "urn:fleetguard:device:"
# Claim certificates are shared by a production batch and may only enroll.
CLAIM_URI_PREFIX = "urn:fleetguard:claim:"
# Service certificates name one of the platform's own clients (e.g. its MQTT identity).
SERVICE_URI_PREFIX = "urn:fleetguard:service:"

_REASONS = {
    RevocationReason.KEY_COMPROMISE: x509.ReasonFlags.key_compromise,
    RevocationReason.CA_COMPROMISE: x509.ReasonFlags.ca_compromise,
    RevocationReason.AFFILIATION_CHANGED: x509.ReasonFlags.affiliation_changed,
    RevocationReason.SUPERSEDED: x509.ReasonFlags.superseded,
    RevocationReason.CESSATION_OF_OPERATION: x509.ReasonFlags.cessation_of_operation,
    RevocationReason.CERTIFICATE_HOLD: x509.ReasonFlags.certificate_hold,
    RevocationReason.PRIVILEGE_WITHDRAWN: x509.ReasonFlags.privilege_withdrawn,
}

_CA_KEY_USAGE = x509.KeyUsage(
    digital_signature=False,
    content_commitment=False,
    key_encipherment=False,
    data_encipherment=False,
    key_agreement=False,
    key_cert_sign=True,
    crl_sign=True,
    encipher_only=False,
    decipher_only=False,
)


def _leaf_key_usage(*, key_encipherment: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=key_encipherment,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=False,
        crl_sign=False,
        encipher_only=False,
        decipher_only=False,
    )


_NOT_CA = x509.BasicConstraints(ca=False, path_length=None)


def signature_hash(key: CaSigningKey) -> hashes.SHA256 | hashes.SHA384:
    """SHA-384 for P-384 keys, SHA-256 for P-256 and RSA-3072 (matching strength)."""
    if isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.key_size >= 384:
        return hashes.SHA384()
    return hashes.SHA256()


def random_serial() -> int:
    """159 random bits: positive, at most 20 octets, unpredictable (CA/B BR 7.1)."""
    return x509.random_serial_number()


def ca_name(organization: str, common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def spki_sha256(key: CertificatePublicKeyTypes) -> str:
    der = key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return hashlib.sha256(der).hexdigest()


def certificate_sha256(cert: x509.Certificate) -> str:
    return cert.fingerprint(hashes.SHA256()).hex()


def _ski(cert: x509.Certificate) -> x509.SubjectKeyIdentifier:
    return cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value


def authority_key_id(issuer: x509.Certificate) -> x509.AuthorityKeyIdentifier:
    return x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(_ski(issuer))


def build_root_certificate(
    signer: CaSigningKey, name: x509.Name, *, now: datetime, validity: timedelta
) -> x509.Certificate:
    public = signer.public_key()
    ski = x509.SubjectKeyIdentifier.from_public_key(public)
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(public)
        .serial_number(random_serial())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(now + validity)
        .add_extension(x509.BasicConstraints(ca=True, path_length=1), critical=True)
        .add_extension(_CA_KEY_USAGE, critical=True)
        .add_extension(ski, critical=False)
        .add_extension(x509.AuthorityKeyIdentifier(ski.digest, None, None), critical=False)
        .sign(signer, signature_hash(signer))
    )


def build_issuing_certificate(
    root_signer: CaSigningKey,
    root: x509.Certificate,
    public: CaPublicKey,
    name: x509.Name,
    *,
    now: datetime,
    validity: timedelta,
) -> x509.Certificate:
    not_after = min(now + validity, root.not_valid_after_utc)
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(root.subject)
        .public_key(public)
        .serial_number(random_serial())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_CA_KEY_USAGE, critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .add_extension(authority_key_id(root), critical=False)
        .sign(root_signer, signature_hash(root_signer))
    )


def device_uri(device_id: uuid.UUID) -> str:
    return f"{DEVICE_URI_PREFIX}{device_id}"


def claim_uri(batch_id: uuid.UUID) -> str:
    return f"{CLAIM_URI_PREFIX}{batch_id}"


def service_uri(name: str) -> str:
    return f"{SERVICE_URI_PREFIX}{name}"


def build_leaf_certificate(
    signer: CaSigningKey,
    issuer: x509.Certificate,
    issuer_aki: x509.AuthorityKeyIdentifier,
    public: CertificatePublicKeyTypes,
    *,
    common_name: str,
    alt_names: Sequence[x509.GeneralName],
    usage: x509.ObjectIdentifier,
    rsa_key_encipherment: bool,
    not_before: datetime,
    not_after: datetime,
) -> x509.Certificate:
    """Every leaf the fleet CA signs: ``CN=<common_name>``, the given SANs, one extended
    key usage, CA:false. ``rsa_key_encipherment`` adds keyEncipherment for RSA keys
    (a TLS server whose peers may still use RSA key exchange)."""
    key_usage = _leaf_key_usage(
        key_encipherment=rsa_key_encipherment and isinstance(public, rsa.RSAPublicKey)
    )
    return (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
        .issuer_name(issuer.subject)
        .public_key(public)
        .serial_number(random_serial())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(_NOT_CA, critical=True)
        .add_extension(key_usage, critical=True)
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .add_extension(issuer_aki, critical=False)
        .sign(signer, signature_hash(signer))
    )


def build_crl(
    signer: CaSigningKey,
    issuer: x509.Certificate,
    revocations: Iterable[Revocation],
    *,
    crl_number: int,
    this_update: datetime,
    next_update: datetime,
) -> x509.CertificateRevocationList:
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(issuer.subject)
        .last_update(this_update)
        .next_update(next_update)
        .add_extension(x509.CRLNumber(crl_number), critical=False)
        .add_extension(authority_key_id(issuer), critical=False)
    )
    for entry in revocations:
        revoked = (
            x509.RevokedCertificateBuilder()
            .serial_number(entry.serial_number)
            .revocation_date(entry.revoked_at)
        )
        flag = _REASONS.get(entry.reason)
        if flag is not None:  # RFC 5280 5.3.1: omit the reason rather than "unspecified"
            revoked = revoked.add_extension(x509.CRLReason(flag), critical=False)
        builder = builder.add_revoked_certificate(revoked.build())
    return builder.sign(signer, signature_hash(signer))


def keys_match(signer: CaSigningKey, public: CertificatePublicKeyTypes) -> bool:
    """Prove that ``signer`` holds the private half of ``public`` by signing a challenge."""
    challenge = b"fleetguard-ca-key-check"
    try:
        if isinstance(signer, ec.EllipticCurvePrivateKey):
            if not isinstance(public, ec.EllipticCurvePublicKey):
                return False
            algorithm = ec.ECDSA(signature_hash(signer))
            public.verify(signer.sign(challenge, algorithm), challenge, algorithm)
            return True
        if not isinstance(public, rsa.RSAPublicKey):
            return False
        pad = padding.PKCS1v15()
        public.verify(signer.sign(challenge, pad, hashes.SHA256()), challenge, pad, hashes.SHA256())
        return True
    except InvalidSignature:
        return False
