"""Enrollment, device authentication and revocation, at the service level."""

from __future__ import annotations

import ipaddress
import threading
import time
from datetime import timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from sqlalchemy import update

from fleetguard.core.clock import utcnow
from fleetguard.core.errors import FleetError
from fleetguard.identity import admission
from fleetguard.identity import service as identity
from fleetguard.identity.errors import (
    DeviceCertificateRejectedError,
    DeviceNotTrustedError,
    EnrollmentTokenInvalidError,
    KeyAlreadyBoundError,
)
from fleetguard.pki import FleetCA
from fleetguard.registry import DeviceState
from fleetguard.registry import service as registry
from fleetguard.store import Database
from fleetguard.store.tables import EnrollmentTokenRow


def _csr(key: ec.EllipticCurvePrivateKey | None = None, *, greedy: bool = False) -> str:
    key = key or ec.generate_private_key(ec.SECP256R1())
    builder = x509.CertificateSigningRequestBuilder().subject_name(
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "admin.example.com")])
    )
    if greedy:
        builder = builder.add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
        builder = builder.add_extension(x509.SubjectAlternativeName([
            x509.DNSName("evil.example.com"), x509.IPAddress(ipaddress.ip_address("10.0.0.1")),
        ]), False)
    return builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM).decode()


def _device_with_token(db: Database, ca: FleetCA, name: str = "cam") -> tuple[str, str]:
    with db.session() as s:
        device = registry.register_device(s, name=name, actor="t")
        token, _ = identity.create_enrollment_token(s, ca, device_id=device.id, actor="t", issuer=None)
    return device.id, token


def test_token_enrollment_activates_the_device(sqlite_db: Database, ca: FleetCA) -> None:
    device_id, token = _device_with_token(sqlite_db, ca)
    with sqlite_db.session() as s:
        result = identity.enroll_with_token(s, ca, token=token, csr=_csr(), source="127.0.0.1")
        assert registry.get_device(s, device_id).state is DeviceState.ACTIVE
    assert result.device_id == device_id


def test_csr_wishes_are_never_honoured(sqlite_db: Database, ca: FleetCA) -> None:
    device_id, token = _device_with_token(sqlite_db, ca)
    with sqlite_db.session() as s:
        result = identity.enroll_with_token(s, ca, token=token, csr=_csr(greedy=True), source="x")
    cert = x509.load_pem_x509_certificate(result.certificate_pem.encode())
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert [str(v) for v in san.get_values_for_type(x509.UniformResourceIdentifier)] == [
        f"urn:fleetguard:device:{device_id}"
    ]
    assert san.get_values_for_type(x509.DNSName) == []
    assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is False
    assert cert.subject.rfc4514_string() == f"CN={device_id}"


def test_a_key_bound_to_one_device_is_refused_for_another(sqlite_db: Database, ca: FleetCA) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    _, first = _device_with_token(sqlite_db, ca, "a")
    _, second = _device_with_token(sqlite_db, ca, "b")
    with sqlite_db.session() as s:
        identity.enroll_with_token(s, ca, token=first, csr=_csr(key), source="x")
    with pytest.raises(KeyAlreadyBoundError), sqlite_db.session() as s:
        identity.enroll_with_token(s, ca, token=second, csr=_csr(key), source="x")


def test_concurrent_enrollments_with_one_key_bind_it_once(db: Database, ca: FleetCA) -> None:
    # The second enrollment checks for the key before the first commits; the database's
    # unique index must still refuse it (on PostgreSQL both would otherwise pass).
    key = ec.generate_private_key(ec.SECP256R1())
    _, first = _device_with_token(db, ca, "a")
    _, second = _device_with_token(db, ca, "b")
    first_issued, release = threading.Event(), threading.Event()
    outcome: list[object] = []

    def enroll_first() -> None:
        with db.session() as s:
            identity.enroll_with_token(s, ca, token=first, csr=_csr(key), source="x")
            first_issued.set()
            release.wait(10)

    def enroll_second() -> None:
        first_issued.wait(10)
        try:
            with db.session() as s:
                identity.enroll_with_token(s, ca, token=second, csr=_csr(key), source="x")
            outcome.append("issued")
        except KeyAlreadyBoundError as exc:
            outcome.append(exc)

    threads = [threading.Thread(target=enroll_first), threading.Thread(target=enroll_second)]
    for t in threads:
        t.start()
    first_issued.wait(10)
    time.sleep(0.3)  # let the second reach its check (PostgreSQL) or the writer lock (SQLite)
    release.set()
    for t in threads:
        t.join(15)
    assert len(outcome) == 1 and isinstance(outcome[0], KeyAlreadyBoundError)
    with db.read_session() as s:
        assert len(identity.list_certificates(s)) == 1


def test_expired_token_is_refused(sqlite_db: Database, ca: FleetCA) -> None:
    _, token = _device_with_token(sqlite_db, ca)
    with sqlite_db.session() as s:
        s.execute(update(EnrollmentTokenRow).values(expires_at=utcnow() - timedelta(seconds=1)))
    with pytest.raises(EnrollmentTokenInvalidError), sqlite_db.session() as s:
        identity.enroll_with_token(s, ca, token=token, csr=_csr(), source="x")


def test_token_of_another_fleet_is_refused(sqlite_db: Database, ca: FleetCA) -> None:
    _, token = _device_with_token(sqlite_db, ca)
    with pytest.raises(EnrollmentTokenInvalidError, match="another fleet"), sqlite_db.session() as s:
        identity.enroll_with_token(s, ca, token=token[:-64] + "a" * 64, csr=_csr(), source="x")


def test_failed_enrollment_consumes_neither_token_nor_key(sqlite_db: Database, ca: FleetCA) -> None:
    _, token = _device_with_token(sqlite_db, ca)
    with pytest.raises(FleetError), sqlite_db.session() as s:
        identity.enroll_with_token(s, ca, token=token, csr="garbage", source="x")
    with sqlite_db.session() as s:
        assert identity.list_certificates(s) == []
        identity.enroll_with_token(s, ca, token=token, csr=_csr(), source="x")


def test_retiring_credentials_revokes_certificates_and_kills_tokens_only(
    sqlite_db: Database, ca: FleetCA
) -> None:
    device_id, token = _device_with_token(sqlite_db, ca)
    with sqlite_db.session() as s:
        identity.enroll_with_token(s, ca, token=token, csr=_csr(), source="x")
        spare, _ = identity.create_enrollment_token(s, ca, device_id=device_id, actor="t", issuer=None)
        assert identity.retire_device_credentials(s, ca, device_id=device_id, actor="t") == 1
        certificates = identity.list_certificates(s, device_id=device_id)
        assert [c.revocation_reason for c in certificates] == ["cessation_of_operation"]
        assert registry.get_device(s, device_id).state is DeviceState.ACTIVE  # not its call
    with pytest.raises(EnrollmentTokenInvalidError), sqlite_db.session() as s:
        identity.enroll_with_token(s, ca, token=spare, csr=_csr(), source="x")


def _der(pem: str) -> bytes:
    return x509.load_pem_x509_certificate(pem.encode()).public_bytes(serialization.Encoding.DER)


def test_revoked_certificate_no_longer_authenticates(sqlite_db: Database, ca: FleetCA) -> None:
    _, token = _device_with_token(sqlite_db, ca)
    with sqlite_db.session() as s:
        result = identity.enroll_with_token(s, ca, token=token, csr=_csr(), source="x")
        assert admission.authenticate_peer_certificate(s, _der(result.certificate_pem), source="x")
        identity.revoke_certificate(s, ca, serial_hex=result.serial_hex, actor="t")
    with pytest.raises(DeviceCertificateRejectedError), sqlite_db.session() as s:
        admission.authenticate_peer_certificate(s, _der(result.certificate_pem), source="x")
    text = (Path(ca.crl_directory) / "crls.pem").read_bytes()
    end = b"-----END X509 CRL-----"
    crls = [x509.load_pem_x509_crl(block + end) for block in text.split(end)[:-1]]
    assert any(c.get_revoked_certificate_by_serial_number(int(result.serial_hex, 16)) for c in crls)


def test_suspended_device_is_refused_even_with_a_valid_certificate(sqlite_db: Database, ca: FleetCA) -> None:
    device_id, token = _device_with_token(sqlite_db, ca)
    with sqlite_db.session() as s:
        result = identity.enroll_with_token(s, ca, token=token, csr=_csr(), source="x")
        registry.set_device_state(s, device_id, DeviceState.SUSPENDED, actor="t")
    with pytest.raises(DeviceNotTrustedError), sqlite_db.session() as s:
        admission.authenticate_peer_certificate(s, _der(result.certificate_pem), source="x")


def test_one_certificate_used_from_two_places_is_reported(sqlite_db: Database, ca: FleetCA) -> None:
    device_id, token = _device_with_token(sqlite_db, ca)
    with sqlite_db.session() as s:
        result = identity.enroll_with_token(s, ca, token=token, csr=_csr(), source="x")
        admission.authenticate_peer_certificate(s, _der(result.certificate_pem), source="10.1.1.1")
        assert identity.shared_identity_alerts(s) == []
        admission.authenticate_peer_certificate(s, _der(result.certificate_pem), source="10.2.2.2")
        alerts = identity.shared_identity_alerts(s)
    assert len(alerts) == 1 and alerts[0].device_id == device_id
    assert alerts[0].sources == ["10.1.1.1", "10.2.2.2"]


def test_crls_are_republished_only_when_due(sqlite_db: Database, ca: FleetCA) -> None:
    with sqlite_db.session() as s:
        identity.publish_crls(s, ca)
        assert identity.refresh_crls_if_due(s, ca) is False
        later = utcnow() + timedelta(days=5)
        assert identity.refresh_crls_if_due(s, ca, now=later) is True
    next_update = identity.crl_next_update(ca)
    assert next_update is not None and next_update > utcnow() + timedelta(hours=24)


def test_read_only_units_of_work_refuse_to_write(sqlite_db: Database) -> None:
    with pytest.raises(RuntimeError), sqlite_db.read_session() as s:
        registry.register_device(s, name="sneaky", actor="t")
    with sqlite_db.session() as s:
        assert registry.list_devices(s).devices == []
