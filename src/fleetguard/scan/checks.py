"""The catalogue of scan checks: stable ids, default severity, remediation, references.

Ids never change once published; ``docs/scan-checks.md`` documents each one. References use
ETSI EN 303 645 V3.1.3 provision ids (V2.1.1 where it differs is in the docs), the adopted
numbering of CRA Annex I ("I(2)(d)" = Part I point (2)(d)), and the OWASP IoT Top 10 (2018).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from fleetguard.scan.models import Severity


class CheckId(StrEnum):
    DEFAULT_CREDENTIALS = "default-credentials"
    NO_AUTHENTICATION = "no-authentication"
    CLEARTEXT_PROTOCOL = "cleartext-protocol"
    TLS_LEGACY_PROTOCOL = "tls-legacy-protocol"
    TLS_WEAK_CIPHER = "tls-weak-cipher"
    TLS_EXPIRED_CERTIFICATE = "tls-expired-certificate"
    TLS_SELF_SIGNED_CERTIFICATE = "tls-self-signed-certificate"
    TLS_UNTRUSTED_CERTIFICATE = "tls-untrusted-certificate"
    TLS_WEAK_KEY = "tls-weak-key"
    TLS_WEAK_SIGNATURE = "tls-weak-signature"
    TLS_HOSTNAME_MISMATCH = "tls-hostname-mismatch"
    SNMP_DEFAULT_COMMUNITY = "snmp-default-community"
    UPNP_EXPOSED = "upnp-exposed"
    SERVICE_EXPOSED = "service-exposed"


@dataclass(frozen=True, slots=True)
class CheckInfo:
    id: CheckId
    severity: Severity
    title: str
    remediation: str
    references: tuple[str, ...]


_ETSI = "ETSI EN 303 645 "
_CRA = "CRA Annex I "
_OWASP = "OWASP IoT Top 10 "

_TLS_REFS = (
    _ETSI + "5.5-1",
    _ETSI + "5.5-7",
    _ETSI + "5.8-2",
    _CRA + "I(2)(e)",
    _CRA + "I(2)(f)",
    _OWASP + "I7",
)

CATALOGUE: dict[CheckId, CheckInfo] = {
    c.id: c
    for c in (
        CheckInfo(
            CheckId.DEFAULT_CREDENTIALS,
            Severity.CRITICAL,
            "Login accepted with a publicly known default credential",
            "Change the credential now and give every device its own (unique per device or set "
            "by the user at first use); disable the account if it is not needed.",
            (
                _ETSI + "5.1-1",
                _ETSI + "5.1-2",
                _ETSI + "5.5-4",
                _CRA + "I(2)(b)",
                _CRA + "I(2)(d)",
                _OWASP + "I1",
                _OWASP + "I9",
            ),
        ),
        CheckInfo(
            CheckId.NO_AUTHENTICATION,
            Severity.HIGH,
            "Service usable without any authentication",
            "Require authentication on the service (credentials or client certificates), or "
            "disable it or bind it to a management network only.",
            (
                _ETSI + "5.5-4",
                _ETSI + "5.5-5",
                _ETSI + "5.6-1",
                _CRA + "I(2)(b)",
                _CRA + "I(2)(d)",
                _OWASP + "I2",
                _OWASP + "I9",
            ),
        ),
        CheckInfo(
            CheckId.CLEARTEXT_PROTOCOL,
            Severity.MEDIUM,
            "Cleartext protocol exposed",
            "Replace it by its encrypted form (SSH instead of telnet, SFTP/FTPS instead of FTP, "
            "HTTPS instead of HTTP, MQTT over TLS on 8883) and close the cleartext port.",
            (
                _ETSI + "5.1-3",
                _ETSI + "5.5-1",
                _ETSI + "5.5-7",
                _CRA + "I(2)(e)",
                _OWASP + "I2",
                _OWASP + "I7",
            ),
        ),
        CheckInfo(
            CheckId.TLS_LEGACY_PROTOCOL,
            Severity.MEDIUM,
            "Legacy SSL/TLS protocol version accepted",
            "Accept TLS 1.2 and 1.3 only; disable SSLv3, TLS 1.0 and TLS 1.1 (firmware update or "
            "server configuration).",
            _TLS_REFS,
        ),
        CheckInfo(
            CheckId.TLS_WEAK_CIPHER,
            Severity.MEDIUM,
            "Weak TLS cipher suite accepted",
            "Allow only AEAD suites with forward secrecy (ECDHE with AES-GCM or ChaCha20); remove "
            "NULL, EXPORT, anonymous, RC4, DES and 3DES suites.",
            _TLS_REFS,
        ),
        CheckInfo(
            CheckId.TLS_EXPIRED_CERTIFICATE,
            Severity.MEDIUM,
            "TLS certificate expired or not yet valid",
            "Install a currently valid certificate and automate its renewal; check the device "
            "clock (NTP) if the certificate is not yet valid.",
            (*_TLS_REFS, _ETSI + "5.5-8"),
        ),
        CheckInfo(
            CheckId.TLS_SELF_SIGNED_CERTIFICATE,
            Severity.LOW,
            "Self-signed TLS certificate",
            "Issue the device certificate from a CA the clients trust (the fleet CA), unique per "
            "device, so clients can authenticate the device.",
            (*_TLS_REFS, _ETSI + "5.4-4"),
        ),
        CheckInfo(
            CheckId.TLS_UNTRUSTED_CERTIFICATE,
            Severity.LOW,
            "TLS certificate chain not trusted",
            "Serve the full chain of a CA the clients trust (the fleet CA or a public CA).",
            _TLS_REFS,
        ),
        CheckInfo(
            CheckId.TLS_WEAK_KEY,
            Severity.MEDIUM,
            "Weak TLS certificate key",
            "Re-key with RSA of at least 2048 bits or an EC key on P-256 or stronger.",
            _TLS_REFS,
        ),
        CheckInfo(
            CheckId.TLS_WEAK_SIGNATURE,
            Severity.MEDIUM,
            "TLS certificate signed with a broken hash",
            "Re-issue the certificate with a SHA-256 (or stronger) signature.",
            _TLS_REFS,
        ),
        CheckInfo(
            CheckId.TLS_HOSTNAME_MISMATCH,
            Severity.LOW,
            "TLS certificate does not name the host",
            "Issue a certificate whose subjectAltName holds the name (or address) clients use.",
            _TLS_REFS,
        ),
        CheckInfo(
            CheckId.SNMP_DEFAULT_COMMUNITY,
            Severity.HIGH,
            "SNMP answers a default community string",
            "Disable SNMPv1/v2c or set a secret community bound to the management network; "
            "prefer SNMPv3 with authPriv.",
            (
                _ETSI + "5.1-1",
                _ETSI + "5.5-1",
                _ETSI + "5.6-2",
                _CRA + "I(2)(b)",
                _CRA + "I(2)(d)",
                _OWASP + "I1",
                _OWASP + "I2",
            ),
        ),
        CheckInfo(
            CheckId.UPNP_EXPOSED,
            Severity.MEDIUM,
            "UPnP/SSDP answers and discloses the device description",
            "Disable UPnP on the device (and UPnP IGD on routers) unless it is needed on that "
            "network; it reveals model and serial and can be abused for reflection.",
            (
                _ETSI + "5.6-1",
                _ETSI + "5.6-2",
                _CRA + "I(2)(i)",
                _CRA + "I(2)(j)",
                _OWASP + "I2",
            ),
        ),
        CheckInfo(
            CheckId.SERVICE_EXPOSED,
            Severity.INFO,
            "Network service exposed",
            "Check that the service is needed for the device's intended use; close it otherwise.",
            (_ETSI + "5.6-1", _ETSI + "5.6-2", _CRA + "I(2)(j)", _OWASP + "I2"),
        ),
    )
}


def check_info(check: CheckId) -> CheckInfo:
    return CATALOGUE[check]


__all__ = ["CATALOGUE", "CheckId", "CheckInfo", "check_info"]
