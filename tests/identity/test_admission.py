"""May this device connect: one rule, asked per request by the device endpoint and for the
whole fleet by the broker; the two answers never differ."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from fleetguard.core.clock import utcnow
from fleetguard.core.errors import FleetError
from fleetguard.identity import admission
from fleetguard.identity import service as identity
from fleetguard.identity.admission import ConnectRefusal, connect_refusal
from fleetguard.pki import FleetCA
from fleetguard.registry import DeviceState
from fleetguard.registry import service as registry
from fleetguard.store import Database
from tests.support import csr_pem


@dataclass(frozen=True)
class Validity:
    revoked_at: datetime | None
    not_before: datetime
    not_after: datetime


NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
VALID = Validity(None, NOW - timedelta(days=1), NOW + timedelta(days=1))


def _enrolled(db: Database, ca: FleetCA, name: str) -> tuple[str, bytes, str]:
    """-> (device id, DER certificate, serial) of a freshly enrolled device."""
    with db.session() as s:
        device = registry.register_device(s, name=name, actor="t")
        token, _ = identity.create_enrollment_token(s, ca, device_id=device.id, actor="t",
                                                    issuer=None)
        result = identity.enroll_with_token(s, ca, token=token, csr=csr_pem(), source="x")
    pem = x509.load_pem_x509_certificate(result.certificate_pem.encode())
    return device.id, pem.public_bytes(serialization.Encoding.DER), result.serial_hex


def test_an_unrevoked_certificate_valid_now_of_a_trusted_device_may_connect() -> None:
    assert connect_refusal(VALID, device_trusted=True, now=NOW) is None


def test_a_revoked_certificate_may_not_connect() -> None:
    revoked = Validity(NOW, VALID.not_before, VALID.not_after)
    assert connect_refusal(revoked, device_trusted=True, now=NOW) is ConnectRefusal.REVOKED


@pytest.mark.parametrize("when", [VALID.not_before - timedelta(seconds=1), VALID.not_after])
def test_a_certificate_outside_its_validity_may_not_connect(when: datetime) -> None:
    assert connect_refusal(VALID, device_trusted=True, now=when) is ConnectRefusal.NOT_VALID_NOW


def test_a_device_out_of_a_trusted_state_may_not_connect_with_a_good_certificate() -> None:
    refusal = connect_refusal(VALID, device_trusted=False, now=NOW)
    assert refusal is ConnectRefusal.DEVICE_NOT_TRUSTED


def test_the_broker_and_the_device_endpoint_give_the_same_answer(
    sqlite_db: Database, ca: FleetCA
) -> None:
    devices = {name: _enrolled(sqlite_db, ca, name)
               for name in ("active", "suspended", "quarantined", "revoked")}
    with sqlite_db.session() as s:
        registry.set_device_state(s, devices["suspended"][0], DeviceState.SUSPENDED, actor="t")
        registry.set_device_state(s, devices["quarantined"][0], DeviceState.QUARANTINED,
                                  actor="t")
        identity.revoke_certificate(s, ca, serial_hex=devices["revoked"][2], actor="t")
    with sqlite_db.session() as s:
        entitled = admission.devices_entitled_to_connect(s)
        for name, (device_id, der, _) in devices.items():
            try:
                admission.authenticate_peer_certificate(s, der, source="x")
                authenticated = True
            except FleetError:
                authenticated = False
            assert authenticated == (device_id in entitled), name
    assert entitled == {devices["active"][0]}


def test_a_device_whose_certificates_all_expired_is_not_entitled(
    sqlite_db: Database, ca: FleetCA
) -> None:
    device_id, _, _ = _enrolled(sqlite_db, ca, "cam")
    with sqlite_db.session() as s:
        assert admission.devices_entitled_to_connect(s) == {device_id}
        later = utcnow() + timedelta(days=400)
        assert admission.devices_entitled_to_connect(s, now=later) == set()


def test_the_fleet_answer_follows_the_rule_across_a_certificates_lifetime(
    sqlite_db: Database, ca: FleetCA
) -> None:
    device_id, _, _ = _enrolled(sqlite_db, ca, "cam")
    with sqlite_db.session() as s:
        [certificate] = identity.list_certificates(s, device_id=device_id)
        moments = [certificate.not_before - timedelta(seconds=1), certificate.not_before,
                   certificate.not_after - timedelta(seconds=1), certificate.not_after]
        for now in moments:
            allowed = connect_refusal(certificate, device_trusted=True, now=now) is None
            assert (device_id in admission.devices_entitled_to_connect(s, now=now)) == allowed
    assert [connect_refusal(certificate, device_trusted=True, now=m) for m in moments] == [
        ConnectRefusal.NOT_VALID_NOW, None, None, ConnectRefusal.NOT_VALID_NOW]


def test_revoked_unexpired_certificates_are_listed_with_their_device(
    sqlite_db: Database, ca: FleetCA
) -> None:
    device_id, _, serial = _enrolled(sqlite_db, ca, "cam")
    _enrolled(sqlite_db, ca, "other")
    with sqlite_db.session() as s:
        identity.revoke_certificate(s, ca, serial_hex=serial, actor="t")
        assert admission.revoked_device_certificates(s) == {serial: device_id}
