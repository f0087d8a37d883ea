"""Device certificates: what the server sets, what it ignores, and that a real peer agrees."""

from __future__ import annotations

import hashlib
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from fleetguard.pki import FleetCA, device_uri
from fleetguard.pki.errors import CaExpiredError, InvalidCertificateParametersError


@pytest.mark.parametrize("device_key", ["p256", "p384", "ed25519", "rsa2048"])
def test_every_accepted_device_key_gets_a_certificate_openssl_verifies(
    ca: FleetCA, make_key, make_csr, openssl_verify, device_key: str
) -> None:
    issued = ca.issue_device_certificate(make_csr(make_key(device_key)), uuid.uuid4())
    result = openssl_verify(issued.certificate_pem, ca.bundle_pem())
    assert result.ok, result.output


def test_certificates_of_every_ca_key_algorithm_verify_with_openssl(
    ca_of_each_algorithm: FleetCA, make_key, make_csr, openssl_verify
) -> None:
    issued = ca_of_each_algorithm.issue_device_certificate(make_csr(make_key()), uuid.uuid4())
    result = openssl_verify(issued.certificate_pem, ca_of_each_algorithm.bundle_pem())
    assert result.ok, result.output


def test_device_certificate_names_the_device_in_cn_and_uri_san(ca: FleetCA, device_csr) -> None:
    device_id = uuid.uuid4()
    cert = ca.issue_device_certificate(device_csr, device_id).certificate
    assert cert.subject.rfc4514_string() == f"CN={device_id}"
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert list(san) == [x509.UniformResourceIdentifier(f"urn:fleetguard:device:{device_id}")]
    assert device_uri(device_id) == f"urn:fleetguard:device:{device_id}"


def test_device_certificate_is_a_client_auth_leaf(ca: FleetCA, device_csr) -> None:
    ext = ca.issue_device_certificate(device_csr, uuid.uuid4()).certificate.extensions
    basic = ext.get_extension_for_class(x509.BasicConstraints)
    usage = ext.get_extension_for_class(x509.KeyUsage)
    eku = ext.get_extension_for_class(x509.ExtendedKeyUsage)
    assert basic.critical and basic.value.ca is False
    assert usage.critical and usage.value.digital_signature
    assert not usage.value.key_cert_sign and not usage.value.crl_sign
    assert list(eku.value) == [ExtendedKeyUsageOID.CLIENT_AUTH]


def test_device_certificate_links_subject_and_authority_key_ids(ca: FleetCA, device_csr) -> None:
    cert = ca.issue_device_certificate(device_csr, uuid.uuid4()).certificate
    ski = cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    aki = cert.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    assert ski == x509.SubjectKeyIdentifier.from_public_key(cert.public_key())
    assert aki.key_identifier is not None
    assert aki.key_identifier.hex() == ca.active_issuing_ca.key_id


def test_request_for_ca_true_and_extra_names_is_not_honoured(
    ca: FleetCA, make_key, make_csr, openssl_verify
) -> None:
    device_id, victim = uuid.uuid4(), uuid.uuid4()
    asks = [
        (x509.BasicConstraints(ca=True, path_length=None), True),
        (
            x509.SubjectAlternativeName(
                [
                    x509.DNSName("evil.example"),
                    x509.UniformResourceIdentifier(device_uri(victim)),
                ]
            ),
            False,
        ),
        (x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), False),
    ]
    csr = make_csr(make_key(), common_name=str(victim), extensions=asks)
    cert = ca.issue_device_certificate(csr, device_id).certificate
    assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is False
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert list(san) == [x509.UniformResourceIdentifier(device_uri(device_id))]
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == str(device_id)
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    as_server = openssl_verify(
        cert.public_bytes(serialization.Encoding.PEM), ca.bundle_pem(), purpose="sslserver"
    )
    assert not as_server.ok


def test_default_validity_is_thirty_days(ca: FleetCA, device_csr) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    issued = ca.issue_device_certificate(device_csr, uuid.uuid4(), now=now)
    assert issued.not_after == now + timedelta(days=30)
    assert issued.not_before == now - timedelta(minutes=5)


def test_validity_is_configurable(ca: FleetCA, device_csr) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    issued = ca.issue_device_certificate(
        device_csr, uuid.uuid4(), validity=timedelta(hours=24), now=now
    )
    assert issued.not_after == now + timedelta(hours=24)


def test_validity_never_outlives_the_issuing_ca(ca: FleetCA, device_csr) -> None:
    end = ca.active_issuing_ca.not_after
    issued = ca.issue_device_certificate(
        device_csr, uuid.uuid4(), validity=timedelta(days=398), now=end - timedelta(days=10)
    )
    assert issued.not_after == end


def test_issuing_from_an_expired_issuing_ca_asks_for_rotation(ca: FleetCA, device_csr) -> None:
    later = ca.active_issuing_ca.not_after + timedelta(days=1)
    with pytest.raises(CaExpiredError, match="rotate"):
        ca.issue_device_certificate(device_csr, uuid.uuid4(), now=later)


@pytest.mark.parametrize("validity", [timedelta(0), timedelta(days=-1), timedelta(days=399)])
def test_validity_out_of_bounds_is_refused(ca: FleetCA, device_csr, validity: timedelta) -> None:
    with pytest.raises(InvalidCertificateParametersError):
        ca.issue_device_certificate(device_csr, uuid.uuid4(), validity=validity)


def test_device_id_must_be_a_uuid(ca: FleetCA, device_csr) -> None:
    with pytest.raises(InvalidCertificateParametersError, match="UUID"):
        ca.issue_device_certificate(device_csr, "not-a-uuid")  # type: ignore[arg-type]


def test_serials_are_random_positive_and_at_most_159_bits(ca: FleetCA, device_csr) -> None:
    serials = {
        ca.issue_device_certificate(device_csr, uuid.uuid4()).serial_number for _ in range(50)
    }
    assert len(serials) == 50
    assert all(0 < s < 2**159 for s in serials)
    assert max(serials).bit_length() > 150


def test_result_carries_fingerprints_of_certificate_and_public_key(
    ca: FleetCA, make_key, make_csr
) -> None:
    key = make_key()
    issued = ca.issue_device_certificate(make_csr(key), uuid.uuid4())
    der = issued.certificate.public_bytes(serialization.Encoding.DER)
    spki = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    assert issued.fingerprint_sha256 == hashlib.sha256(der).hexdigest()
    assert issued.spki_sha256 == hashlib.sha256(spki).hexdigest()
    assert issued.serial_hex == format(issued.certificate.serial_number, "x")


def test_same_key_in_two_requests_gives_the_same_spki_fingerprint(
    ca: FleetCA, make_key, make_csr
) -> None:
    key = make_key()
    first = ca.issue_device_certificate(make_csr(key, common_name="a"), uuid.uuid4())
    second = ca.issue_device_certificate(make_csr(key, common_name="b"), uuid.uuid4())
    assert first.spki_sha256 == second.spki_sha256
    assert first.fingerprint_sha256 != second.fingerprint_sha256


def test_der_request_is_accepted(ca: FleetCA, make_key, make_csr) -> None:
    issued = ca.issue_device_certificate(make_csr(make_key(), pem=False), uuid.uuid4())
    assert issued.device_id is not None


def test_chain_pem_is_the_leaf_then_its_issuing_ca(ca: FleetCA, device_csr) -> None:
    issued = ca.issue_device_certificate(device_csr, uuid.uuid4())
    chain = x509.load_pem_x509_certificates(issued.chain_pem)
    assert chain == [issued.certificate, ca.active_issuing_ca.certificate]
