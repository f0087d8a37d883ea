"""Attack: one device reaches into another device's MQTT topics.

A compromised device (its own valid certificate, connected to the real Mosquitto that
``fleetguard broker`` configures, with dynamic-security roles per device) tries to forge
telemetry or command results for device B, to send B commands, to read B's commands, or
to read everything with a wildcard. Every publish is refused (PUBACK "not authorized"),
every subscription is refused (SUBACK failure), B and the platform receive nothing the
attacker sent, and the attacker receives nothing meant for B.

A denied QoS 1 publish still gets a PUBACK, so every refusal is also checked where the
message would have arrived: a marker sent afterwards by a legitimate party proves the
forged message would have been there by then.

Beside the topics, MQTT has one more shared name: the client id. Mosquitto lets a new
connection take over any client id in use (MQTT's session takeover), whoever's it is;
the attacker uses B's id (the agent connects with its device id) or the platform's, and
neither is disconnected: the broker replaces every client id by the certificate's CN.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import pytest

from fleetguard.telemetry import IngestService
from fleetguard.telemetry.mqtt_consumer import MqttConsumer, MqttSettings
from tests.broker.conftest import (
    Client,
    DeviceCreds,
    Fleet,
    drain_until,
)

pytestmark = pytest.mark.process

NOT_AUTHORIZED = 135
QUIET_S = 1.0  # how long a refused party is watched for anything arriving


def _device(fleet: Fleet, name: str) -> DeviceCreds:
    creds = fleet.enroll(f"{name}-{uuid.uuid4().hex[:8]}")
    fleet.wait_entitled(creds.device_id)
    return creds


@pytest.fixture
def attacker(fleet: Fleet) -> DeviceCreds:
    return _device(fleet, "attacker")


@pytest.fixture
def victim(fleet: Fleet) -> DeviceCreds:
    return _device(fleet, "victim")


def _connected(fleet: Fleet, creds: DeviceCreds, *, client_id: str | None = None) -> Client:
    client = Client(fleet.files, creds.cert, creds.key,
                    client_id=client_id or f"t-{uuid.uuid4().hex[:10]}")
    assert client.connect(), "a device with a valid certificate could not connect"
    return client


def _received(client: Client, wait_s: float = QUIET_S) -> list[tuple[str, bytes]]:
    time.sleep(wait_s)
    got = []
    while not client.messages.empty():
        got.append(client.messages.get())
    return got


def test_cross_device_publish_to_another_devices_topics_is_refused_and_never_delivered(
    fleet: Fleet, platform: Client, attacker: DeviceCreds, victim: DeviceCreds
) -> None:
    b = victim.device_id
    victim_client = _connected(fleet, victim, client_id=b)
    bad = _connected(fleet, attacker)
    try:
        assert not victim_client.subscribe(f"fg/d/{b}/cmd").is_failure
        for kind in ("telemetry", "heartbeat", "cmd/result", "cmd"):
            rc = bad.publish(f"fg/d/{b}/{kind}", b"forged-" + kind.encode())
            assert rc is not None and rc.value == NOT_AUTHORIZED, (kind, rc)
        # The victim's own report, after the attempts: it arrives, the forgeries do not.
        marker = f"marker-{uuid.uuid4().hex}".encode()
        rc = victim_client.publish(f"fg/d/{b}/heartbeat", marker)
        assert rc is not None and not rc.is_failure
        at_platform = drain_until(platform.messages, marker)
        at_victim = _received(victim_client)
    finally:
        bad.close()
        victim_client.close()
    assert [p for _, p in at_platform if p.startswith(b"forged")] == []
    assert at_victim == []


def test_cross_device_subscribe_to_another_devices_topics_is_refused_and_receives_nothing(
    fleet: Fleet, platform: Client, attacker: DeviceCreds, victim: DeviceCreds
) -> None:
    b = victim.device_id
    victim_client = _connected(fleet, victim, client_id=b)
    bad = _connected(fleet, attacker)
    try:
        assert not victim_client.subscribe(f"fg/d/{b}/cmd").is_failure
        for pattern in (f"fg/d/{b}/cmd", f"fg/d/{b}/#", f"fg/d/{b}/telemetry", "fg/d/+/cmd",
                        "fg/d/+/telemetry", "fg/d/#", "fg/#", "#"):
            assert bad.subscribe(pattern).is_failure, pattern
        # The platform commands the victim; the victim reports.
        rc = platform.publish(f"fg/d/{b}/cmd", b"secret-command")
        assert rc is not None and not rc.is_failure
        assert victim_client.messages.get(timeout=5) == (f"fg/d/{b}/cmd", b"secret-command")
        rc = victim_client.publish(f"fg/d/{b}/telemetry", b"secret-telemetry")
        assert rc is not None and not rc.is_failure
        drain_until(platform.messages, b"secret-telemetry")
        stolen = _received(bad)
    finally:
        bad.close()
        victim_client.close()
    assert stolen == []


def test_cross_device_client_id_takeover_does_not_disconnect_the_victim(
    fleet: Fleet, attacker: DeviceCreds, victim: DeviceCreds
) -> None:
    """The broker names every client by its certificate (``use_username_as_clientid``):
    the attacker asking for the victim's id gets its own."""
    victim_client = _connected(fleet, victim, client_id=victim.device_id)
    bad = Client(fleet.files, attacker.cert, attacker.key, client_id=victim.device_id)
    bad.mqtt.reconnect_delay_set(60, 60)
    try:
        bad.connect()
        time.sleep(QUIET_S)
        assert not victim_client.gone.is_set(), (
            f"the victim was disconnected ({victim_client.disconnect_reason})")
        assert victim_client.connects == 1
        # The attacker is connected, as itself: its own topics, not the victim's.
        assert bad.connected.is_set() and not bad.gone.is_set()
        rc = bad.publish(f"fg/d/{attacker.device_id}/heartbeat", b"as-itself")
        assert rc is not None and not rc.is_failure
        rc = bad.publish(f"fg/d/{victim.device_id}/heartbeat", b"as-the-victim")
        assert rc is not None and rc.value == NOT_AUTHORIZED
    finally:
        bad.close()
        victim_client.close()


@pytest.fixture
def consumer(fleet: Fleet) -> Iterator[MqttConsumer]:
    """The platform's real ingest consumer (its own client id and persistent session)."""
    ingest = IngestService(fleet.db, sweep_every_s=None, compact_every_s=None)
    running = MqttConsumer(ingest, MqttSettings(
        host=fleet.files.connect_host, port=fleet.files.port, ca_file=fleet.files.ca_bundle,
        cert_file=fleet.files.service_cert, key_file=fleet.files.service_key,
        reconnect_min_s=30, reconnect_max_s=30,
    ))
    running.start()
    try:
        assert running.wait_connected(10), "the ingest consumer never connected"
        yield running
    finally:
        running.stop()
        ingest.stop()


@pytest.mark.parametrize("taken", ["asked-for", "given"])
def test_cross_device_client_id_takeover_does_not_disconnect_the_platforms_consumer(
    fleet: Fleet, attacker: DeviceCreds, consumer: MqttConsumer, taken: str
) -> None:
    """Neither the id the consumer asks for ('fleetguard-ingest') nor the one the broker
    gives it (its certificate's CN) can be taken: a device connecting with either (clean
    start, which would also discard the consumer's persistent session) gets its own id."""
    client_id = (consumer.settings.client_id if taken == "asked-for"
                 else fleet.files.service_name)
    bad = Client(fleet.files, attacker.cert, attacker.key, client_id=client_id)
    bad.mqtt.reconnect_delay_set(60, 60)
    try:
        bad.connect()
        time.sleep(QUIET_S)
        assert consumer.connected, "the platform's ingest consumer was disconnected"
        assert consumer.stats.connects == 1
    finally:
        bad.close()
