"""What a real Mosquitto, configured and driven by fleetguard, lets devices do.

A denied publish still looks fine to the client (QoS 0: nothing comes back; QoS 1: a
PUBACK with "Not authorized"), so every refusal is checked on the receiving side: the
service identity subscribes to ``fg/d/+/#`` and a marker sent after the attempt proves
the attempt would have arrived by then.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import time
import uuid
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from fleetguard.broker import ADMIN_ROLE, CONTROL_TOPIC, RESPONSE_TOPIC, SERVICE_ROLE
from fleetguard.core.config import load_settings
from fleetguard.protocol import ContentType, encode_message
from fleetguard.telemetry import IngestService
from fleetguard.telemetry.mqtt_consumer import MqttConsumer, MqttSettings
from tests.broker.conftest import Client, DeviceCreds, Fleet, drain_until
from tests.telemetry.support import report

NOT_AUTHORIZED = 135


def _marker(fleet: Fleet, creds: DeviceCreds) -> bytes:
    """Publish a unique marker from a legitimate device; return it."""
    marker = f"marker-{uuid.uuid4().hex}".encode()
    sender = Client(fleet.files, creds.cert, creds.key)
    assert sender.connect()
    try:
        rc = sender.publish(f"fg/d/{creds.device_id}/heartbeat", marker)
        assert rc is not None and not rc.is_failure
    finally:
        sender.close()
    return marker


def test_device_publishes_its_telemetry_and_the_service_receives_it(
    fleet: Fleet, service: Client, device: DeviceCreds
) -> None:
    client = Client(fleet.files, device.cert, device.key)
    assert client.connect()
    try:
        for kind in ("telemetry", "heartbeat", "cmd/result"):
            rc = client.publish(f"fg/d/{device.device_id}/{kind}", kind.encode())
            assert rc is not None and not rc.is_failure, rc
        got = drain_until(service.messages, b"cmd/result")
    finally:
        client.close()
    assert got == [(f"fg/d/{device.device_id}/{k}", k.encode())
                   for k in ("telemetry", "heartbeat", "cmd/result")]


def test_device_receives_its_commands_and_only_its_own(
    fleet: Fleet, service: Client, device: DeviceCreds
) -> None:
    other = fleet.enroll(f"other-{uuid.uuid4().hex[:6]}")
    fleet.wait_entitled(other.device_id)
    mine, theirs = (Client(fleet.files, c.cert, c.key) for c in (device, other))
    assert mine.connect() and theirs.connect()
    try:
        assert not mine.subscribe(f"fg/d/{device.device_id}/cmd").is_failure
        assert not theirs.subscribe(f"fg/d/{other.device_id}/cmd").is_failure
        rc = service.publish(f"fg/d/{device.device_id}/cmd", b"report-now")
        assert rc is not None and not rc.is_failure
        assert mine.messages.get(timeout=5) == (f"fg/d/{device.device_id}/cmd", b"report-now")
        rc = service.publish(f"fg/d/{other.device_id}/cmd", b"for-other")
        assert theirs.messages.get(timeout=5)[1] == b"for-other"
        assert mine.messages.empty()
    finally:
        mine.close()
        theirs.close()


def test_another_devices_topics_are_refused(
    fleet: Fleet, service: Client, device: DeviceCreds
) -> None:
    victim = fleet.enroll(f"victim-{uuid.uuid4().hex[:6]}")
    fleet.wait_entitled(victim.device_id)
    attacker = Client(fleet.files, device.cert, device.key)
    assert attacker.connect()
    try:
        for topic in (f"fg/d/{victim.device_id}/telemetry", f"fg/d/{victim.device_id}/cmd",
                      f"fg/d/{device.device_id}/cmd", f"fg/d/{device.device_id}/other",
                      "fg/other", "$CONTROL/dynamic-security/v1"):
            rc = attacker.publish(topic, b"forged")
            assert rc is not None and rc.value == NOT_AUTHORIZED, (topic, rc)
        for pattern in (f"fg/d/{victim.device_id}/cmd", "fg/d/+/cmd", "fg/d/#", "#",
                        "$CONTROL/dynamic-security/#", "$SYS/#"):
            assert attacker.subscribe(pattern).is_failure, pattern
        got = drain_until(service.messages, _marker(fleet, victim))
    finally:
        attacker.close()
    assert [payload for _, payload in got if payload == b"forged"] == []


def test_no_client_certificate_is_refused(fleet: Fleet) -> None:
    client = Client(fleet.files, None, None)
    assert not client.connect()
    client.close()


def test_self_signed_certificate_naming_a_real_device_is_refused(
    fleet: Fleet, service: Client, device: DeviceCreds, tmp_path: Path
) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, device.device_id)])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    (tmp_path / "rogue.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "rogue.key").write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ))
    rogue = Client(fleet.files, tmp_path / "rogue.crt", tmp_path / "rogue.key")
    assert not rogue.connect()
    rogue.close()
    got = drain_until(service.messages, _marker(fleet, device))
    assert len(got) == 1


def test_valid_certificate_of_a_suspended_device_gets_no_permission(
    fleet: Fleet, service: Client, device: DeviceCreds
) -> None:
    """Its certificate still passes TLS (not revoked), but the broker grants it nothing."""
    from fleetguard.registry import DeviceState
    from fleetguard.registry import service as registry

    creds = fleet.enroll(f"susp-{uuid.uuid4().hex[:6]}")
    with fleet.db.session() as session:
        registry.set_device_state(session, creds.device_id, DeviceState.SUSPENDED,
                                  actor="test", reason="test")
    client = Client(fleet.files, creds.cert, creds.key)
    assert client.connect()
    try:
        rc = client.publish(f"fg/d/{creds.device_id}/telemetry", b"from-suspended")
        assert rc is not None and rc.value == NOT_AUTHORIZED
        assert client.subscribe(f"fg/d/{creds.device_id}/cmd").is_failure
    finally:
        client.close()
    got = drain_until(service.messages, _marker(fleet, device))
    assert b"from-suspended" not in [payload for _, payload in got]


def test_the_ingest_consumer_with_a_device_identity_is_refused_its_subscription_and_retries(
    fleet: Fleet, device: DeviceCreds, caplog: pytest.LogCaptureFixture
) -> None:
    """Only the service identity may read every device's telemetry: a consumer started
    with a device's certificate never counts as connected, says why, and keeps trying."""
    ingest = IngestService(fleet.db, sweep_every_s=None, compact_every_s=None)
    consumer = MqttConsumer(ingest, MqttSettings(
        host=fleet.files.connect_host, port=fleet.files.port, ca_file=fleet.files.ca_bundle,
        cert_file=device.cert, key_file=device.key, client_id=f"not-the-platform-{device.device_id}",
        reconnect_min_s=0, reconnect_max_s=0,
    ))
    refused = 0
    with caplog.at_level("WARNING", logger="fleetguard.telemetry.mqtt"):
        consumer.start()
        try:
            deadline = time.monotonic() + 10
            while refused < 2 and time.monotonic() < deadline:
                time.sleep(0.1)
                refused = sum("refused the subscription" in r.getMessage() for r in caplog.records)
        finally:
            consumer.stop()
            ingest.stop()
    assert refused >= 2
    assert consumer.stats.connects == 0 and not consumer.connected


def _serves_consumer(fleet: Fleet, ingest: IngestService) -> MqttConsumer:
    """The consumer `fleetguard serve --mqtt-broker` builds over this installation."""
    from fleetguard.server.serve import mqtt_consumer

    settings = load_settings(fleet.tmp / "data")
    return mqtt_consumer(settings, ingest, f"{fleet.files.connect_host}:{fleet.files.port}")


def test_the_ingest_identity_cannot_administer_the_broker(fleet: Fleet) -> None:
    """What `fleetguard serve` reads telemetry with is no dynsec admin: its control
    requests are refused (PUBACK "not authorized"), it cannot subscribe to the answers,
    and nothing changes, not even its own roles."""
    ingest = IngestService(fleet.db, sweep_every_s=None, compact_every_s=None)
    identity = _serves_consumer(fleet, ingest).settings
    assert (identity.cert_file, identity.key_file) == (fleet.files.service_cert,
                                                       fleet.files.service_key)
    client = Client(fleet.files, identity.cert_file, identity.key_file)
    assert client.connect()
    escalations = [
        {"command": "addClientRole", "username": fleet.files.service_name,
         "rolename": ADMIN_ROLE},
        {"command": "createClient", "username": "test-escalated",
         "roles": [{"rolename": ADMIN_ROLE}]},
        {"command": "setDefaultACLAccess", "acls": [{"acltype": "subscribe", "allow": True}]},
        {"command": "deleteRole", "rolename": ADMIN_ROLE},
    ]
    try:
        assert client.subscribe(RESPONSE_TOPIC).is_failure
        assert client.subscribe("$CONTROL/#").is_failure
        for command in escalations:
            rc = client.publish(CONTROL_TOPIC, json.dumps({"commands": [command]}).encode())
            assert rc is not None and rc.value == NOT_AUTHORIZED, (command, rc)
        time.sleep(0.5)  # had the plugin taken one, it would have answered by now
        assert client.messages.empty()
    finally:
        client.close()
    clients = {str(c["username"]): c for c in fleet.admin.list_clients()}
    assert "test-escalated" not in clients
    assert [r["rolename"] for r in clients[fleet.files.service_name]["roles"]] == [SERVICE_ROLE]
    assert ADMIN_ROLE in {str(r["rolename"]) for r in fleet.admin.list_roles()}
    default = fleet.admin.one("getDefaultACLAccess")["acls"]
    assert {a["acltype"]: a["allow"] for a in default}["subscribe"] is False


def test_the_ingest_session_is_its_identitys_and_resumes_after_a_reconnect(
    fleet: Fleet, device: DeviceCreds, caplog: pytest.LogCaptureFixture
) -> None:
    """The broker keys the persistent session on the certificate, not on the id the
    consumer asks for: reports sent while no consumer runs reach the next one, which asks
    for another id."""
    def consumer(ingest: IngestService, client_id: str) -> MqttConsumer:
        return MqttConsumer(ingest, dataclasses.replace(
            _serves_consumer(fleet, ingest).settings, client_id=client_id,
            reconnect_min_s=30, reconnect_max_s=30))

    first_ingest = IngestService(fleet.db, sweep_every_s=None, compact_every_s=None)
    first = consumer(first_ingest, "fleetguard-ingest")
    first.start()
    try:
        assert first.wait_connected(10)
        time.sleep(0.3)  # the subscription lands
    finally:
        first.stop()
        first_ingest.stop()
    sender = Client(fleet.files, device.cert, device.key, client_id=device.device_id)
    assert sender.connect()
    try:
        for seq in (1, 2, 3):
            rc = sender.publish(f"fg/d/{device.device_id}/telemetry",
                                encode_message(report(seq), ContentType.CBOR.value))
            assert rc is not None and not rc.is_failure
    finally:
        sender.close()
    second_ingest = IngestService(fleet.db, sweep_every_s=None, compact_every_s=None)
    second = consumer(second_ingest, f"another-{uuid.uuid4().hex[:6]}")
    with caplog.at_level("INFO", logger="fleetguard.telemetry.mqtt"):
        second.start()
        try:
            assert second.wait_connected(10)
            deadline = time.monotonic() + 10
            while second.stats.accepted < 3 and time.monotonic() < deadline:
                time.sleep(0.05)
        finally:
            second.stop()
            second_ingest.stop()
    assert second.stats.accepted == 3, second.stats
    assert any("session resumed" in r.getMessage() for r in caplog.records)
