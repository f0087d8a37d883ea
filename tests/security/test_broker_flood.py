"""A device floods the broker: one 20 MB message, or more than an absent platform can queue.

Against the broker ``fleetguard broker`` runs (a real Mosquitto, its generated config,
the sync loop and its log watch). A device that publishes a packet over the limit is
disconnected as soon as the broker reads the packet's header, its message never reaches
the platform, and the refusal is counted against the device its certificate names
(telemetry's per-device rejection counts, reason ``too_large``), whatever client id it
chose; a well-behaved device, even one sending the largest valid message, keeps working.
A session the platform left behind queues messages up to a bound in bytes, not only in
number (300,000 messages of 260 KiB were 78 GB).
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from fleetguard.broker import BrokerConfig
from fleetguard.core.tls import client_context
from fleetguard.protocol import MAX_MESSAGE_BYTES, RejectReason
from fleetguard.telemetry import rejection_counts
from tests.broker.conftest import (
    Client,
    DeviceCreds,
    Fleet,
    drain_until,
    reachable_directory,
    running_fleet,
)

pytestmark = pytest.mark.process

FLOOD = 20 * 1024 * 1024  # what a device sent in the incident
TOO_LARGE = RejectReason.TOO_LARGE.value


def _device(fleet: Fleet) -> DeviceCreds:
    creds = fleet.enroll(f"dev-{uuid.uuid4().hex[:8]}")
    fleet.wait_entitled(creds.device_id)
    return creds


def _too_large(fleet: Fleet, device_id: str) -> int:
    with fleet.db.session() as session:
        return rejection_counts(session, device_id).get(device_id, {}).get(TOO_LARGE, 0)


def _wait_count(fleet: Fleet, device_id: str, expected: int, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while (got := _too_large(fleet, device_id)) < expected and time.monotonic() < deadline:
        time.sleep(0.05)
    assert got == expected, f"{device_id}: {got} too_large, expected {expected}"


def _flood(fleet: Fleet, creds: DeviceCreds, *, client_id: str, protocol: int) -> Client:
    """Connect as ``creds`` and publish FLOOD bytes; return once the broker dropped us."""
    client = Client(fleet.files, creds.cert, creds.key, client_id=client_id, protocol=protocol)
    client.mqtt.reconnect_delay_set(60, 60)  # paho would send the message again on reconnect
    assert client.connect()
    ok = client.publish(f"fg/d/{creds.device_id}/telemetry", b"fine")
    assert ok is not None and not ok.is_failure
    client.mqtt.publish(f"fg/d/{creds.device_id}/telemetry", b"\x00" * FLOOD, qos=1)
    assert client.gone.wait(10), "the broker kept a device that sent 20 MB"
    client.close()
    return client


@pytest.mark.parametrize("protocol", [mqtt.MQTTv311, mqtt.MQTTv5], ids=["mqtt311", "mqtt5"])
def test_oversized_publish_disconnects_the_device_and_is_counted(
    fleet: Fleet, platform: Client, protocol: int
) -> None:
    attacker, witness = _device(fleet), _device(fleet)
    good = Client(fleet.files, witness.cert, witness.key, client_id=witness.device_id,
                  protocol=mqtt.MQTTv311)
    assert good.connect()
    try:
        assert _too_large(fleet, attacker.device_id) == 0
        flooded = _flood(fleet, attacker, client_id=attacker.device_id, protocol=protocol)
        assert flooded.connects == 1
        _wait_count(fleet, attacker.device_id, 1)
        assert fleet.sync.log_watch is not None
        assert fleet.sync.log_watch.stats.oversize_by_device[attacker.device_id] == 1
        # The well-behaved device is still connected and still heard.
        marker = f"marker-{uuid.uuid4().hex}".encode()
        rc = good.publish(f"fg/d/{witness.device_id}/telemetry", marker)
        assert rc is not None and not rc.is_failure
        got = drain_until(platform.messages, marker)
        from_attacker = [p for t, p in got if t.startswith(f"fg/d/{attacker.device_id}/")]
        assert from_attacker == [b"fine"], "the oversized message reached the platform"
        assert good.connects == 1 and not good.gone.is_set()
        assert _too_large(fleet, witness.device_id) == 0
    finally:
        good.close()


def test_oversize_is_counted_against_the_certificate_not_the_client_id(fleet: Fleet) -> None:
    attacker, victim = _device(fleet), _device(fleet)
    _flood(fleet, attacker, client_id=victim.device_id, protocol=mqtt.MQTTv311)
    _wait_count(fleet, attacker.device_id, 1)
    assert _too_large(fleet, victim.device_id) == 0


def test_the_largest_valid_message_passes_the_packet_limit(
    fleet: Fleet, platform: Client
) -> None:
    device = _device(fleet)
    client = Client(fleet.files, device.cert, device.key, client_id=device.device_id)
    assert client.connect()
    try:
        payload = b"\xa5" * MAX_MESSAGE_BYTES  # the protocol's limit, on its longest topic
        props = Properties(PacketTypes.PUBLISH)
        props.ContentType = "application/cbor"
        props.MessageExpiryInterval = 3600
        info = client.mqtt.publish(f"fg/d/{device.device_id}/cmd/result", payload, qos=1,
                                   properties=props)
        info.wait_for_publish(10)
        assert info.is_published()
        got = [p for t, p in drain_until(platform.messages, payload, timeout=10)
               if t.startswith(f"fg/d/{device.device_id}/")]
        assert got == [payload]
        assert client.connects == 1 and not client.gone.is_set()
        assert _too_large(fleet, device.device_id) == 0
    finally:
        client.close()


# -- the queue of a platform session that is away ------------------------------------

QUEUE_BYTES = 64 * 1024
MESSAGE = 8 * 1024


@pytest.fixture(scope="module")
def small_queues() -> Iterator[Fleet]:
    """A broker whose queues hold 64 KiB (bytes small enough to reach in a test; the count
    limit stays the production one)."""
    with (reachable_directory("fg-queue-") as tmp,
          running_fleet(tmp, BrokerConfig(max_queued_bytes=QUEUE_BYTES)) as fleet):
        yield fleet


def _session(fleet: Fleet, client_id: str, received: list[bytes],
             subscribed: threading.Event | None = None) -> mqtt.Client:
    files = fleet.files
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id,
                         protocol=mqtt.MQTTv5)
    client.tls_set_context(client_context(ca_file=files.ca_bundle, cert_file=files.service_cert,
                                          key_file=files.service_key))
    client.on_message = lambda _c, _u, m: received.append(m.payload)
    if subscribed is not None:
        client.on_subscribe = lambda *_: subscribed.set()
    props = Properties(PacketTypes.CONNECT)
    props.SessionExpiryInterval = 600  # as the ingest session: the broker keeps it while away
    client.connect(files.connect_host, files.port, clean_start=False, properties=props)
    client.loop_start()
    return client


def test_an_absent_subscribers_queue_is_bounded_in_bytes(small_queues: Fleet) -> None:
    fleet = small_queues
    client_id = f"fg-away-{uuid.uuid4().hex[:6]}"
    received: list[bytes] = []
    subscribed = threading.Event()
    away = _session(fleet, client_id, received, subscribed)
    deadline = time.monotonic() + 5
    while not away.is_connected() and time.monotonic() < deadline:
        time.sleep(0.02)
    result, _ = away.subscribe("fg/d/+/telemetry", qos=1)
    assert result == mqtt.MQTT_ERR_SUCCESS and subscribed.wait(5)
    away.disconnect()
    away.loop_stop()
    device = _device(fleet)
    sender = Client(fleet.files, device.cert, device.key, client_id=device.device_id)
    assert sender.connect()
    sent = 60  # 480 KiB: 7.5 times the queue, and far below its count limit
    for i in range(sent):
        rc = sender.publish(f"fg/d/{device.device_id}/telemetry", bytes([i]) * MESSAGE)
        assert rc is not None and not rc.is_failure  # the device is never refused
    sender.close()
    back = _session(fleet, client_id, received)
    try:
        time.sleep(1.0)
        got = len(received)
        assert 0 < got * MESSAGE <= QUEUE_BYTES + MESSAGE, f"{got} of {sent} queued"
        assert received == [bytes([i]) * MESSAGE for i in range(got)]  # the first, in order
        watch = fleet.sync.log_watch
        assert watch is not None
        # The broker names a session by its certificate's CN, whatever id the client asked.
        session = fleet.files.service_name
        deadline = time.monotonic() + 5
        while watch.stats.queue_full[session] == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert watch.stats.queue_full[session] == 1
    finally:
        back.disconnect()
        back.loop_stop()
