"""Leaf certificates: the profile of each kind, and the one path that signs them all.

A profile says what differs between device, claim, server and service certificates
(subject, SANs, extended key usage, the validity limit's name); :func:`issue_leaf`
does the rest the same way for all of them: the validity window inside the issuing
CA's own, the signature, and the record the caller stores.
"""

from __future__ import annotations

import ipaddress
import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import ExtendedKeyUsageOID

from fleetguard.core.clock import utcnow
from fleetguard.pki import _x509
from fleetguard.pki._backends import CaSigningKey
from fleetguard.pki.errors import CaExpiredError, InvalidCertificateParametersError
from fleetguard.pki.models import CaCertificate, IssuedCertificate

DEFAULT_DEVICE_VALIDITY = timedelta(days=30)
DEFAULT_SERVER_VALIDITY = timedelta(days=90)
DEFAULT_SERVICE_VALIDITY = timedelta(days=90)
MAX_LEAF_VALIDITY = timedelta(days=398)

# Lowercase and starting with a letter; UUIDs are refused too: a service can't pose as a device.
_SERVICE_NAME_RE = re.compile(r"\A[a-z][a-z0-9._-]{0,62}\Z")
_DNS_RE = re.compile(
    r"\A(?=.{1,253}\Z)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*\Z"
)
_IpAddress = str | ipaddress.IPv4Address | ipaddress.IPv6Address


def check_validity(validity: timedelta, limit: timedelta | None, what: str) -> None:
    if validity <= timedelta(0):
        raise InvalidCertificateParametersError(f"{what} validity must be positive")
    if limit is not None and validity > limit:
        raise InvalidCertificateParametersError(
            f"{what} validity {validity.days} days exceeds the limit of {limit.days} days"
        )


@dataclass(frozen=True, slots=True)
class Issuer:
    """An issuing CA ready to sign: its certificate, its opened key, its key id extension."""

    ca: CaCertificate
    signer: CaSigningKey
    aki: x509.AuthorityKeyIdentifier


@dataclass(frozen=True, slots=True)
class LeafProfile:
    """What one kind of leaf certificate says about its subject."""

    kind: str  # "device certificate", ...: named in validity errors
    common_name: str
    alt_names: tuple[x509.GeneralName, ...]
    usage: x509.ObjectIdentifier
    device_id: uuid.UUID | None = None  # recorded on the IssuedCertificate
    rsa_key_encipherment: bool = False


def device_profile(device_id: uuid.UUID) -> LeafProfile:
    """``CN=<device id>``, SAN ``urn:fleetguard:device:<id>``, clientAuth."""
    if not isinstance(device_id, uuid.UUID):
        raise InvalidCertificateParametersError("device_id must be a UUID")
    return LeafProfile(
        "device certificate", str(device_id),
        (x509.UniformResourceIdentifier(_x509.device_uri(device_id)),),
        ExtendedKeyUsageOID.CLIENT_AUTH, device_id=device_id,
    )


def claim_profile(batch_id: uuid.UUID) -> LeafProfile:
    """``CN=<batch id>``, SAN ``urn:fleetguard:claim:<id>``, clientAuth: enrollment only."""
    return LeafProfile(
        "claim certificate", str(batch_id),
        (x509.UniformResourceIdentifier(_x509.claim_uri(batch_id)),),
        ExtendedKeyUsageOID.CLIENT_AUTH,
    )


def service_profile(name: str) -> LeafProfile:
    """``CN=<name>``, SAN ``urn:fleetguard:service:<name>``, clientAuth."""
    if not isinstance(name, str) or not _SERVICE_NAME_RE.match(name) or _is_uuid(name):
        raise InvalidCertificateParametersError(
            "service name: 1-63 lowercase letters, digits, '.', '-' or '_', "
            "starting with a letter"
        )
    return LeafProfile(
        "service certificate", name,
        (x509.UniformResourceIdentifier(_x509.service_uri(name)),),
        ExtendedKeyUsageOID.CLIENT_AUTH,
    )


def server_profile(
    dns_names: Sequence[str], ip_addresses: Sequence[_IpAddress], common_name: str | None
) -> LeafProfile:
    """serverAuth for the given DNS names and IPs; the CN defaults to the first of them."""
    names = [_dns_name(d) for d in dns_names]
    try:
        ips = [ipaddress.ip_address(ip) for ip in ip_addresses]
    except ValueError as exc:
        raise InvalidCertificateParametersError(str(exc)) from exc
    if not names and not ips:
        raise InvalidCertificateParametersError("a server certificate needs a DNS name or IP")
    cn = common_name or (names[0] if names else str(ips[0]))
    if not 0 < len(cn) <= 64:
        raise InvalidCertificateParametersError("common name must be 1-64 characters")
    alt_names = (*(x509.DNSName(d) for d in names), *(x509.IPAddress(ip) for ip in ips))
    return LeafProfile(
        "server certificate", cn, alt_names, ExtendedKeyUsageOID.SERVER_AUTH,
        rsa_key_encipherment=True,
    )


def issue_leaf(
    issuer: Issuer,
    public: CertificatePublicKeyTypes,
    profile: LeafProfile,
    *,
    validity: timedelta,
    now: datetime | None,
) -> IssuedCertificate:
    """Sign ``public`` (already checked) under ``profile``; the validity ends at the
    issuing CA's own expiry at the latest."""
    check_validity(validity, MAX_LEAF_VALIDITY, profile.kind)
    not_before, not_after = _window(issuer.ca, validity, now or utcnow())
    cert = _x509.build_leaf_certificate(
        issuer.signer, issuer.ca.certificate, issuer.aki, public,
        common_name=profile.common_name, alt_names=profile.alt_names, usage=profile.usage,
        rsa_key_encipherment=profile.rsa_key_encipherment,
        not_before=not_before, not_after=not_after,
    )
    pem = cert.public_bytes(Encoding.PEM)
    return IssuedCertificate(
        certificate=cert,
        serial_number=cert.serial_number,
        fingerprint_sha256=_x509.certificate_sha256(cert),
        spki_sha256=_x509.spki_sha256(public),
        not_before=cert.not_valid_before_utc,
        not_after=cert.not_valid_after_utc,
        issuer_ca_id=issuer.ca.ca_id,
        issuer_key_id=issuer.ca.key_id,
        certificate_pem=pem,
        chain_pem=pem + issuer.ca.pem,
        device_id=profile.device_id,
    )


def _window(ca: CaCertificate, validity: timedelta, now: datetime) -> tuple[datetime, datetime]:
    end = ca.not_after
    if end <= now + timedelta(hours=1):
        raise CaExpiredError(
            f"issuing CA {ca.ca_id} expires at {end:%Y-%m-%d %H:%M} UTC; "
            "rotate it (`fleetguard ca rotate`)"
        )
    return now - _x509.BACKDATE, min(now + validity, end)


def _is_uuid(text: str) -> bool:
    try:
        uuid.UUID(text)
    except ValueError:
        return False
    return True


def _dns_name(name: str) -> str:
    value = name.strip().lower().rstrip(".")
    if not _DNS_RE.match(value):
        raise InvalidCertificateParametersError(f"not a DNS host name: {name!r}")
    return value
