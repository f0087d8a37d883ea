"""Server certificates for the platform's own TLS endpoints."""

from __future__ import annotations

import ipaddress

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID

from fleetguard.pki import FleetCA
from fleetguard.pki.errors import InvalidCertificateParametersError, WeakKeyError


def test_server_certificate_verifies_for_tls_servers(ca: FleetCA, make_key, openssl_verify) -> None:
    issued = ca.issue_server_certificate(
        make_key().public_key(), dns_names=["fleet.example.com"], ip_addresses=["127.0.0.1"]
    )
    result = openssl_verify(issued.certificate_pem, ca.bundle_pem(), purpose="sslserver")
    assert result.ok, result.output


def test_server_certificate_carries_the_given_names_only(ca: FleetCA, make_key) -> None:
    cert = ca.issue_server_certificate(
        make_key().public_key(), dns_names=["Fleet.Example.com."], ip_addresses=["::1", "10.0.0.2"]
    ).certificate
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["fleet.example.com"]
    assert san.get_values_for_type(x509.IPAddress) == [
        ipaddress.ip_address("::1"),
        ipaddress.ip_address("10.0.0.2"),
    ]
    assert cert.subject.rfc4514_string() == "CN=fleet.example.com"


def test_server_certificate_is_for_server_auth_only(ca: FleetCA, make_key) -> None:
    cert = ca.issue_server_certificate(make_key().public_key(), dns_names=["a.example"]).certificate
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.SERVER_AUTH]
    assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is False


def test_server_certificate_needs_a_name(ca: FleetCA, make_key) -> None:
    with pytest.raises(InvalidCertificateParametersError, match="DNS name or IP"):
        ca.issue_server_certificate(make_key().public_key())


@pytest.mark.parametrize("name", ["bad name", "-lead.example", "a" * 64 + ".example", "*.x.y"])
def test_invalid_dns_names_are_refused(ca: FleetCA, make_key, name: str) -> None:
    with pytest.raises(InvalidCertificateParametersError, match="not a DNS host name"):
        ca.issue_server_certificate(make_key().public_key(), dns_names=[name])


def test_invalid_ip_address_is_refused(ca: FleetCA, make_key) -> None:
    with pytest.raises(InvalidCertificateParametersError):
        ca.issue_server_certificate(make_key().public_key(), ip_addresses=["999.1.1.1"])


def test_weak_server_key_is_refused(ca: FleetCA) -> None:
    weak = rsa.generate_private_key(public_exponent=65537, key_size=1024).public_key()
    with pytest.raises(WeakKeyError):
        ca.issue_server_certificate(weak, dns_names=["a.example"])


def test_rsa_server_certificate_allows_key_encipherment(ca: FleetCA, make_key) -> None:
    """TLS peers that still use RSA key exchange encrypt to a server's RSA key."""
    cert = ca.issue_server_certificate(
        make_key("rsa2048").public_key(), dns_names=["a.example"]
    ).certificate
    usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    assert usage.digital_signature and usage.key_encipherment


def test_rsa_client_certificates_only_sign(ca: FleetCA, make_key) -> None:
    cert = ca.issue_service_certificate(make_key("rsa2048").public_key(), "fleetguard-mqtt")
    usage = cert.certificate.extensions.get_extension_for_class(x509.KeyUsage).value
    assert usage.digital_signature and not usage.key_encipherment
