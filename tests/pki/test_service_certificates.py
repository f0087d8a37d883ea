"""Service certificates: the platform's own client identities (e.g. its MQTT admin)."""

from __future__ import annotations

import uuid

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from fleetguard.pki import SERVICE_URI_PREFIX, FleetCA, service_uri
from fleetguard.pki.errors import InvalidCertificateParametersError


def test_service_certificate_names_the_service_in_cn_and_uri(ca: FleetCA, make_key) -> None:
    cert = ca.issue_service_certificate(make_key().public_key(), "fleetguard-platform").certificate
    cn = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    assert [a.value for a in cn] == ["fleetguard-platform"]
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.UniformResourceIdentifier) == [
        f"{SERVICE_URI_PREFIX}fleetguard-platform"
    ] == [service_uri("fleetguard-platform")]
    assert san.get_values_for_type(x509.DNSName) == []


def test_service_certificate_is_a_client_leaf(ca: FleetCA, make_key, openssl_verify) -> None:
    issued = ca.issue_service_certificate(make_key().public_key(), "ingest")
    eku = issued.certificate.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    basic = issued.certificate.extensions.get_extension_for_class(x509.BasicConstraints)
    assert basic.value.ca is False and basic.critical
    assert issued.device_id is None
    result = openssl_verify(issued.certificate_pem, ca.bundle_pem(), purpose="sslclient")
    assert result.ok, result.output


@pytest.mark.parametrize(
    "name", ["", "Upper", "9starts-with-digit", "has space", "a/b", "x" * 64, str(uuid.UUID(int=0xA << 124)), uuid.UUID(int=0xA << 124).hex]
)
def test_service_name_must_be_plain_and_never_a_uuid(ca: FleetCA, make_key, name: str) -> None:
    with pytest.raises(InvalidCertificateParametersError, match="service name"):
        ca.issue_service_certificate(make_key().public_key(), name)
