"""The broker's certificates: its own TLS server identity and the platform's MQTT
identities (ingestion's service identity, the sync loop's admin), each issued by the
fleet CA and renewed before it runs out.

Private to the broker package.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import pwd
from datetime import datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtensionOID, NameOID

from fleetguard.broker.models import BrokerConfig, BrokerFiles
from fleetguard.core.clock import utcnow
from fleetguard.core.config import Settings
from fleetguard.core.files import write_atomic
from fleetguard.pki import FleetCA

log = logging.getLogger(__name__)

SERVICE_CERT_VALIDITY = timedelta(days=90)
SERVICE_CERT_RENEW_BEFORE = timedelta(days=30)
# The broker's TLS certificate: renewed at start, and by the sync loop while it runs
# (Mosquitto reloads its certificate on SIGHUP), once fewer than 30 days are left.
TLS_CERT_VALIDITY = timedelta(days=90)
TLS_CERT_RENEW_BEFORE = timedelta(days=30)
# Names the broker's certificate carries when the installation's has none to copy.
_DEFAULT_TLS_NAMES = ("localhost", "127.0.0.1", "::1")
_WILDCARD_HOSTS = ("", "0.0.0.0", "::")  # noqa: S104 - compared, never bound

def _san_names(cert: x509.Certificate) -> list[str]:
    try:
        san = cert.extensions.get_extension_for_oid(ExtensionOID.SUBJECT_ALTERNATIVE_NAME).value
    except x509.ExtensionNotFound:
        return []
    assert isinstance(san, x509.SubjectAlternativeName)
    dns = [str(n) for n in san.get_values_for_type(x509.DNSName)]
    ips = [str(ip) for ip in san.get_values_for_type(x509.IPAddress)]
    return dns + ips


def tls_names(settings: Settings, config: BrokerConfig) -> tuple[str, ...]:
    """The installation's server names (those devices reach the platform by), and the
    listen address unless it is a wildcard: what the broker's certificate must name."""
    try:
        server = x509.load_pem_x509_certificate(settings.server_cert_file.read_bytes())
        names = _san_names(server)
    except (OSError, ValueError):
        names = []
    names = names or list(_DEFAULT_TLS_NAMES)
    host = config.host.strip("[]")
    ip = _is_ip(host)
    if host in _WILDCARD_HOSTS or (ip is not None and getattr(ip, "scope_id", None)):
        pass  # every address, or a link-local one with a zone: nothing to name
    elif ip is not None:
        names.append(str(ip))
    elif all(c.isalnum() or c in ".-" for c in host):
        names.append(host.lower().rstrip("."))
    return tuple(dict.fromkeys(names))


def _is_ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def _platform_identities(files: BrokerFiles) -> list[tuple[str, Path, Path]]:
    """(CN, certificate, key) of each MQTT identity of the platform's own."""
    return [(files.service_name, files.service_cert, files.service_key),
            (files.admin_name, files.admin_cert, files.admin_key)]


def _identity_is_current(name: str, cert_file: Path, key_file: Path, ca: FleetCA) -> bool:
    try:
        cert = x509.load_pem_x509_certificate(cert_file.read_bytes())
        key = serialization.load_pem_private_key(key_file.read_bytes(), password=None)
    except (OSError, ValueError, TypeError):
        return False
    cn = [a.value for a in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]
    issuers = {c.certificate.subject for c in ca.issuing_cas if c.not_after > utcnow()}
    fresh = cert.not_valid_after_utc - utcnow() > SERVICE_CERT_RENEW_BEFORE
    return (cn == [name] and key.public_key() == cert.public_key()
            and cert.issuer in issuers and fresh)


def ensure_platform_identities(files: BrokerFiles, ca: FleetCA) -> None:
    """Issue each platform identity a key and certificate when it has no current one."""
    for name, cert_file, key_file in _platform_identities(files):
        if _identity_is_current(name, cert_file, key_file, ca):
            continue
        key = ec.generate_private_key(ec.SECP256R1())
        issued = ca.issue_service_certificate(
            key.public_key(), name, validity=SERVICE_CERT_VALIDITY
        )
        pem = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        write_atomic(key_file, pem, mode=0o600)
        write_atomic(cert_file, issued.chain_pem, mode=0o600)
        log.info("broker identity %s issued (serial %s, until %s)",
                 name, issued.serial_hex, issued.not_after.isoformat())


def _tls_identity_is_current(files: BrokerFiles, ca: FleetCA, now: datetime) -> bool:
    """The broker's certificate exists, matches its key, names ``files.tls_names``, comes
    from a current issuing CA, and has more than ``TLS_CERT_RENEW_BEFORE`` left."""
    try:
        cert = x509.load_pem_x509_certificate(files.tls_cert.read_bytes())
        key = serialization.load_pem_private_key(files.tls_key.read_bytes(), password=None)
    except (OSError, ValueError, TypeError):
        return False
    issuers = {c.certificate.subject for c in ca.issuing_cas if c.not_after > now}
    return (
        key.public_key() == cert.public_key()
        and sorted(_san_names(cert)) == sorted(files.tls_names)
        and cert.issuer in issuers
        and cert.not_valid_after_utc - now > TLS_CERT_RENEW_BEFORE
    )


def renew_tls_identity(
    files: BrokerFiles, ca: FleetCA, *, now: datetime | None = None
) -> bool:
    """Issue the broker a new key and certificate when :func:`_tls_identity_is_current`
    says so; True when it did (the running broker takes them on SIGHUP).

    The key is written 0600, or 0640 with the group of ``files.run_as`` when the broker
    runs as another account (``_account`` opens it the same way at start).
    """
    if _tls_identity_is_current(files, ca, now or utcnow()):
        return False
    names = files.tls_names or _DEFAULT_TLS_NAMES
    ips = [ip for ip in map(_is_ip, names) if ip is not None]
    dns = [n for n in names if _is_ip(n) is None]
    key = ec.generate_private_key(ec.SECP256R1())
    issued = ca.issue_server_certificate(
        key.public_key(), dns_names=dns, ip_addresses=ips, validity=TLS_CERT_VALIDITY,
    )
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    write_atomic(files.tls_key, pem, mode=0o600)
    group = _group_of(files.run_as)
    if group is not None:
        os.chown(files.tls_key, -1, group)
        os.chmod(files.tls_key, 0o640)
    write_atomic(files.tls_cert, issued.chain_pem, mode=0o644)
    log.info("broker TLS certificate issued for %s (serial %s, until %s)",
             ", ".join(names), issued.serial_hex, issued.not_after.isoformat())
    return True


def _group_of(account: str) -> int | None:
    """The group of the account the broker runs as, when that is not us."""
    if not account:
        return None
    try:
        entry = pwd.getpwnam(account)
    except KeyError:
        return None
    return None if entry.pw_uid == os.geteuid() else entry.pw_gid
