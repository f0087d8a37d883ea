"""Revoking or decommissioning a device cuts its live session within 5 s, for good.

The clock starts before the identity service is called and stops when the device's own
MQTT client sees the broker drop it. "For good": the old session's client keeps trying
to reconnect (paho's loop does) and never gets in, a fresh connection with the same
certificate is refused, and nothing it sent reached the platform.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from fleetguard.identity import CallerIdentity
from fleetguard.identity import service as identity
from fleetguard.registry import DeviceState
from fleetguard.registry import service as registry
from fleetguard.server.decommission import decommission_device
from tests.broker.conftest import Client, DeviceCreds, Fleet, drain_until

LIMIT = 5.0


def _connected(fleet: Fleet, creds: DeviceCreds) -> Client:
    client = Client(fleet.files, creds.cert, creds.key)
    assert client.connect()
    assert not client.subscribe(f"fg/d/{creds.device_id}/cmd").is_failure
    rc = client.publish(f"fg/d/{creds.device_id}/telemetry", b"before")
    assert rc is not None and not rc.is_failure
    return client


def _cut_off(fleet: Fleet, client: Client, action: Callable[[], None]) -> float:
    start = time.monotonic()
    action()
    assert client.gone.wait(LIMIT), "the device is still connected after 5 s"
    assert client.disconnected_at is not None
    return client.disconnected_at - start


def _stays_off(fleet: Fleet, service: Client, creds: DeviceCreds, client: Client,
               witness: DeviceCreds) -> None:
    # The old client's network loop retries after a second: let it try.
    time.sleep(1.3)
    assert client.connects == 1, "the cut-off device got back in"
    assert client.publish(f"fg/d/{creds.device_id}/telemetry", b"after") is None
    client.close()
    fresh = Client(fleet.files, creds.cert, creds.key)
    assert not fresh.connect(), "a fresh connection with the revoked certificate got in"
    fresh.close()
    marker = f"marker-{uuid.uuid4().hex}".encode()
    sender = Client(fleet.files, witness.cert, witness.key)
    assert sender.connect()
    sender.publish(f"fg/d/{witness.device_id}/heartbeat", marker)
    sender.close()
    got = drain_until(service.messages, marker)
    assert [p for t, p in got if creds.device_id in t and p != b"before"] == []


@pytest.fixture
def witness(fleet: Fleet) -> DeviceCreds:
    creds = fleet.enroll(f"witness-{uuid.uuid4().hex[:6]}")
    fleet.wait_entitled(creds.device_id)
    return creds


def test_revocation_cuts_a_connected_device_off_within_5_s(
    fleet: Fleet, service: Client, device: DeviceCreds, witness: DeviceCreds,
    record_property: Callable[[str, object], None],
) -> None:
    client = _connected(fleet, device)

    def revoke() -> None:
        with fleet.db.session() as session:
            identity.revoke_certificate(session, fleet.ca, serial_hex=device.serial_hex,
                                        actor="test")

    latency = _cut_off(fleet, client, revoke)
    record_property("cutoff_seconds", round(latency, 3))
    print(f"revocation -> cut-off: {latency:.3f} s")
    assert latency < LIMIT
    _stays_off(fleet, service, device, client, witness)
    log = fleet.files.log_file.read_text()
    assert "disconnected by administrative action" in log  # the kick
    assert "certificate verify failed" in log  # the reconnect, refused by the CRL


def test_decommission_cuts_a_connected_device_off_within_5_s(
    fleet: Fleet, service: Client, device: DeviceCreds, witness: DeviceCreds,
) -> None:
    client = _connected(fleet, device)

    def decommission() -> None:
        with fleet.db.session() as session:
            decommission_device(session, fleet.ca, device_id=device.device_id,
                                actor="test", reason="test")

    latency = _cut_off(fleet, client, decommission)
    print(f"decommission -> cut-off: {latency:.3f} s")
    assert latency < LIMIT
    _stays_off(fleet, service, device, client, witness)
    assert device.device_id not in fleet.dynsec_clients()


def test_suspension_cuts_a_device_off_and_leaves_it_powerless(
    fleet: Fleet, service: Client, device: DeviceCreds, witness: DeviceCreds,
) -> None:
    """No CRL change here: the certificate still opens TLS, the broker grants nothing."""
    client = _connected(fleet, device)

    def suspend() -> None:
        with fleet.db.session() as session:
            registry.set_device_state(session, device.device_id, DeviceState.SUSPENDED,
                                      actor="test", reason="test")

    assert _cut_off(fleet, client, suspend) < LIMIT
    client.close()
    again = Client(fleet.files, device.cert, device.key)
    assert again.connect()
    try:
        assert again.publish(f"fg/d/{device.device_id}/telemetry", b"after").value == 135
        assert again.subscribe(f"fg/d/{device.device_id}/cmd").is_failure
    finally:
        again.close()


def test_revoking_one_of_two_certificates_drops_only_the_revoked_session(
    fleet: Fleet, service: Client, device: DeviceCreds, tmp_path
) -> None:
    """Both certificates carry the same CN, so dynsec cannot tell them apart: the device
    is kicked, and only the session with the valid certificate comes back."""
    key = ec.generate_private_key(ec.SECP256R1())
    csr = (x509.CertificateSigningRequestBuilder()
           .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "renew")]))
           .sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM))
    with fleet.db.session() as session:
        renewed = identity.renew_certificate(
            session, fleet.ca, CallerIdentity("device", device.device_id, device.serial_hex),
            csr=csr, source="127.0.0.1",
        )
    (tmp_path / "new.crt").write_text(renewed.chain_pem)
    (tmp_path / "new.key").write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    old = _connected(fleet, device)
    new = Client(fleet.files, tmp_path / "new.crt", tmp_path / "new.key")
    assert new.connect()

    def revoke_old() -> None:
        with fleet.db.session() as session:
            identity.revoke_certificate(session, fleet.ca, serial_hex=device.serial_hex,
                                        actor="test")

    assert _cut_off(fleet, old, revoke_old) < LIMIT
    time.sleep(1.3)
    assert old.connects == 1
    old.close()
    assert new.connected.is_set()
    deadline = time.monotonic() + LIMIT
    while time.monotonic() < deadline:  # the kick dropped it too; its loop reconnects
        rc = new.publish(f"fg/d/{device.device_id}/telemetry", b"renewed", timeout=1)
        if rc is not None and not rc.is_failure:
            break
        time.sleep(0.2)
    new.close()
    assert any(p == b"renewed" for _, p in drain_until(service.messages, b"renewed"))
