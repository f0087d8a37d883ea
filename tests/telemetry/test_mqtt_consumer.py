"""The MQTT consumer against a real Mosquitto requiring client certificates from a test fleet CA."""

from __future__ import annotations

import itertools
import sqlite3
import ssl
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from fleetguard.core.clock import utcnow
from fleetguard.protocol import CommandName, encode_message
from fleetguard.protocol.mqtt_wire import packet
from fleetguard.store import Database
from fleetguard.telemetry import (
    CommandState,
    IngestService,
    Metric,
    list_commands,
    queue_command,
    read_series,
    rejection_counts,
)
from fleetguard.telemetry.mqtt_consumer import MqttConsumer, MqttSettings
from tests.protocol import samples
from tests.telemetry.mqtt_lab import MOSQUITTO, Broker, FleetCA, Pair
from tests.telemetry.support import add_device, report

pytestmark = pytest.mark.skipif(not Path(MOSQUITTO).exists(), reason="mosquitto is not installed")


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[tuple[FleetCA, Broker]]:
    ca = FleetCA(tmp_path)
    broker = Broker(tmp_path, ca)
    broker.start()
    yield ca, broker
    broker.stop()


def _publisher(ca: FleetCA, broker: Broker, pair: Pair, client_id: str) -> mqtt.Client:
    client = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id=client_id)
    ctx = ssl.create_default_context(cafile=str(ca.ca_file))
    ctx.load_cert_chain(pair.cert, pair.key)
    client.tls_set_context(ctx)
    accepted = threading.Event()
    client.on_connect = lambda _c, _u, _f, reason, _p: reason.is_failure or accepted.set()
    client.connect("127.0.0.1", broker.port)
    client.loop_start()
    # a QoS 0 publish sent before the CONNACK is not retried if anything goes wrong
    assert accepted.wait(15), "the broker did not accept the test publisher"
    return client


def _publish(client: mqtt.Client, topic: str, payload: bytes) -> None:
    info = client.publish(topic, payload, qos=1)
    info.wait_for_publish(timeout=10)
    assert info.is_published()


def _consumer(ingest: IngestService, ca: FleetCA, port: int, *, keepalive_s: int = 30,
              reconnect_min_s: int = 1, reconnect_max_s: int = 2) -> MqttConsumer:
    service = ca.issue("fleetguard-service")
    return MqttConsumer(ingest, MqttSettings(
        host="127.0.0.1", port=port, ca_file=ca.ca_file, cert_file=service.cert,
        key_file=service.key, keepalive_s=keepalive_s, reconnect_min_s=reconnect_min_s,
        reconnect_max_s=reconnect_max_s,
    ))


def _wait(predicate, timeout: float = 15) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return bool(predicate())


def test_consumer_ingests_good_telemetry_and_survives_bad_payloads(
    db: Database, ingest: IngestService, lab: tuple[FleetCA, Broker]
) -> None:
    ca, broker = lab
    device = add_device(db)
    consumer = _consumer(ingest, ca, broker.port)
    consumer.start()
    try:
        assert consumer.wait_connected(15)
        time.sleep(0.3)  # the subscription lands
        pub = _publisher(ca, broker, ca.issue(device), device)
        topic = f"fg/d/{device}/telemetry"
        start = utcnow()
        bad = [b"\xff\xfe", b"{broken", b"", encode_message(samples.heartbeat(), "application/cbor")]
        for seq in range(1, 6):
            _publish(pub, topic, encode_message(report(seq, cpu_percent=float(seq)), "application/cbor" if seq % 2 else "application/json"))
            _publish(pub, topic, bad[seq % len(bad)])
        _publish(pub, f"fg/d/{device}/heartbeat", encode_message(samples.heartbeat(), "application/cbor"))
        _publish(pub, "fg/d/NOT-A-UUID/telemetry", b"{}")
        _publish(pub, f"fg/d/{device.upper()}/telemetry", encode_message(report(99), "application/cbor"))
        pub.loop_stop()
        pub.disconnect()
        assert _wait(lambda: consumer.stats.received == 13), consumer.stats
        assert ingest.flush()
    finally:
        consumer.stop()
    assert consumer.stats.accepted == 6 and consumer.stats.bad_topics == 2
    with db.session() as session:
        cpu = [s.value for s in read_series(session, device, Metric.CPU_PERCENT, since=start.replace(year=2000))]
        counts = rejection_counts(session)
    assert cpu == [1.0, 2.0, 3.0, 4.0, 5.0]
    assert sum(counts[device].values()) == 5 and counts[device]["unexpected_kind"] == 1


def test_a_command_result_published_by_its_device_is_stored_and_a_foreign_one_counted(
    db: Database, ingest: IngestService, lab: tuple[FleetCA, Broker]
) -> None:
    ca, broker = lab
    device, other = add_device(db, "a"), add_device(db, "b")
    with db.session() as session:
        mine = queue_command(session, device, CommandName.REPORT_NOW, actor="operator:1").id
        theirs = queue_command(session, other, CommandName.REPORT_NOW, actor="operator:1").id
    consumer = _consumer(ingest, ca, broker.port)
    consumer.start()
    try:
        assert consumer.wait_connected(15)
        time.sleep(0.3)  # the subscription lands
        pub = _publisher(ca, broker, ca.issue(device), device)
        for command_id in (mine, theirs):
            result = samples.command_result().model_copy(
                update={"id": command_id, "name": CommandName.REPORT_NOW, "checks": None})
            _publish(pub, f"fg/d/{device}/cmd/result", encode_message(result, "application/json"))
        pub.loop_stop()
        pub.disconnect()
        assert _wait(lambda: consumer.stats.accepted == 2), consumer.stats
        assert ingest.flush()
    finally:
        consumer.stop()
    with db.session() as session:
        states = {c.id: c.state for c in [*list_commands(session, device),
                                           *list_commands(session, other)]}
        counts = rejection_counts(session, device)
    assert states == {mine: CommandState.OK, theirs: CommandState.PENDING}
    assert counts == {device: {"command_not_found": 1}}


def test_consumer_reconnects_after_a_broker_restart(
    db: Database, ingest: IngestService, lab: tuple[FleetCA, Broker]
) -> None:
    ca, broker = lab
    device = add_device(db)
    consumer = _consumer(ingest, ca, broker.port)
    consumer.start()
    try:
        assert consumer.wait_connected(15)
        broker.stop()
        assert _wait(lambda: not consumer.connected, 10)
        broker.start()
        assert _wait(lambda: consumer.connected and consumer.stats.connects >= 2, 20)
        time.sleep(0.3)
        pub = _publisher(ca, broker, ca.issue(device), device)
        _publish(pub, f"fg/d/{device}/telemetry", encode_message(report(1), "application/cbor"))
        pub.loop_stop()
        pub.disconnect()
        assert _wait(lambda: consumer.stats.accepted == 1)
    finally:
        consumer.stop()


def test_a_client_without_a_fleet_certificate_is_refused(tmp_path: Path, lab: tuple[FleetCA, Broker]) -> None:
    ca, broker = lab
    (tmp_path / "other").mkdir()
    pair = FleetCA(tmp_path / "other").issue("intruder")
    client = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id="intruder")
    ctx = ssl.create_default_context(cafile=str(ca.ca_file))
    ctx.load_cert_chain(pair.cert, pair.key)
    client.tls_set_context(ctx)
    try:
        client.connect("127.0.0.1", broker.port)
        for _ in range(4):
            client.loop(timeout=0.5)
    except (ssl.SSLError, OSError):
        pass  # refused in the handshake (TLS 1.2), or on the first read (TLS 1.3)
    assert not client.is_connected()


def test_a_message_not_yet_stored_is_not_acknowledged_and_comes_back(
    sqlite_db: Database, lab: tuple[FleetCA, Broker], tmp_path: Path
) -> None:
    """The database is locked, so the first consumer cannot commit; it goes away without
    acknowledging. A consumer with the same client id gets the message again and stores
    it once the lock is gone (exactly one row: a redelivered message is a duplicate)."""
    ca, broker = lab
    db = sqlite_db
    device = add_device(db)
    service = ca.issue("fleetguard-service")
    settings = MqttSettings(host="127.0.0.1", port=broker.port, ca_file=ca.ca_file,
                            cert_file=service.cert, key_file=service.key, client_id="ingest-1")
    locker = sqlite3.connect(str(db.engine.url.database), isolation_level=None)
    locker.execute("BEGIN IMMEDIATE")  # no writer gets in while we hold this
    first_ingest = IngestService(db, sweep_every_s=None, compact_every_s=None, linger_s=0.01)
    first = MqttConsumer(first_ingest, settings)
    first.start()
    second_ingest = IngestService(db, sweep_every_s=None, compact_every_s=None, linger_s=0.01)
    second: MqttConsumer | None = None
    try:
        assert first.wait_connected(15)
        time.sleep(0.3)
        pub = _publisher(ca, broker, ca.issue(device), device)
        _publish(pub, f"fg/d/{device}/telemetry", encode_message(report(1), "application/cbor"))
        pub.loop_stop()
        pub.disconnect()
        assert _wait(lambda: first.stats.accepted == 1)
        first.stop()  # gone before its batch could commit: nothing was acknowledged
        second = MqttConsumer(second_ingest, settings)
        second.start()
        assert _wait(lambda: second is not None and second.stats.accepted == 1), second.stats
        locker.execute("ROLLBACK")
        assert second_ingest.flush(30) and first_ingest.flush(30)
    finally:
        if locker.in_transaction:
            locker.execute("ROLLBACK")
        locker.close()
        if second is not None:
            second.stop()
        first.stop()
        first_ingest.stop()
        second_ingest.stop()
    with db.session() as session:
        stored = read_series(session, device, Metric.CPU_PERCENT, since=utcnow().replace(year=2000))
    assert len(stored) == 1


def test_qos0_telemetry_is_stored_without_an_acknowledgement(
    db: Database, ingest: IngestService, lab: tuple[FleetCA, Broker]
) -> None:
    ca, broker = lab
    device = add_device(db)
    consumer = _consumer(ingest, ca, broker.port)
    consumer.start()
    try:
        assert consumer.wait_connected(15)
        time.sleep(0.3)
        pub = _publisher(ca, broker, ca.issue(device), device)
        info = pub.publish(f"fg/d/{device}/telemetry", encode_message(report(1, cpu_percent=7.0), "application/json"), qos=0)
        info.wait_for_publish(10)
        assert info.is_published()
        pub.loop_stop()
        pub.disconnect()
        assert _wait(lambda: consumer.stats.accepted == 1), (consumer.stats, broker.log.read_text())
        assert ingest.flush()
    finally:
        consumer.stop()
    with db.session() as session:
        cpu = [s.value for s in read_series(session, device, Metric.CPU_PERCENT, since=utcnow().replace(year=2000))]
    assert cpu == [7.0]


class _ScriptedBroker:
    """A TLS listener that answers CONNECT and SUBSCRIBE, then sends ``then`` and only reads
    (or, with ``hang_up``, closes the connection)."""

    def __init__(self, ca: FleetCA, then: bytes, *, hang_up: bool = False) -> None:
        import socket

        server = ca.issue("scripted-broker", server=True)
        self.context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(ca.ca_file))
        self.context.load_cert_chain(server.cert, server.key)
        self.then = then
        self.hang_up = hang_up
        self.connected_at: list[float] = []
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.connections = 0
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                raw, _ = self.listener.accept()
            except OSError:
                return
            try:
                with self.context.wrap_socket(raw, server_side=True) as conn:
                    conn.recv(65536)  # CONNECT
                    conn.sendall(b"\x20\x03\x00\x00\x00")  # CONNACK: accepted, no properties
                    conn.recv(65536)  # SUBSCRIBE
                    # SUBACK: the three topics (telemetry, heartbeat, cmd/result) at QoS 1
                    conn.sendall(b"\x90\x06\x00\x01\x00\x01\x01\x01")
                    self.connections += 1
                    self.connected_at.append(time.monotonic())
                    conn.sendall(self.then)
                    while not self.hang_up and conn.recv(65536):  # until the client hangs up (pings go unanswered)
                        pass
            except OSError:
                continue

    def close(self) -> None:
        self.listener.close()


@pytest.mark.parametrize("garbage", [
    pytest.param(b"\x30\xff\xff\xff\xff\x01", id="remaining-length-too-long"),
    pytest.param(b"\x34\x06\x00\x01a\x00\x01\x00", id="qos2-publish"),
    pytest.param(b"\x32\x03\x00\x09a", id="topic-past-the-packet"),
    pytest.param(b"\x32\x03\x00\x09a" + b"\xd0\x00" * 8, id="topic-into-the-next-packet"),
    pytest.param(b"\x30\x06\x00\x01a\x05\x01\x00", id="properties-past-the-packet"),
    pytest.param(b"\x70\x00", id="unknown-packet-type"),
])
def test_a_broker_sending_garbage_is_dropped_and_the_consumer_reconnects(
    db: Database, ingest: IngestService, tmp_path: Path, garbage: bytes
) -> None:
    ca = FleetCA(tmp_path)
    fake = _ScriptedBroker(ca, garbage)
    consumer = _consumer(ingest, ca, fake.port, reconnect_min_s=0, reconnect_max_s=0)
    consumer.start()
    try:
        assert _wait(lambda: fake.connections >= 3, 15)  # dropped each time, back each time
        assert consumer.stats.accepted == 0 and consumer.stats.errors == 0
    finally:
        consumer.stop()
        fake.close()


def test_a_broker_that_stops_answering_is_left_after_the_keepalive_and_reconnected(
    db: Database, ingest: IngestService, tmp_path: Path
) -> None:
    ca = FleetCA(tmp_path)
    silent = _ScriptedBroker(ca, b"")  # accepts, then never answers a ping
    consumer = _consumer(ingest, ca, silent.port, keepalive_s=1, reconnect_min_s=0,
                         reconnect_max_s=0)
    consumer.start()
    try:
        assert _wait(lambda: silent.connections >= 2, 10)
        assert consumer.stats.connects >= 2
    finally:
        consumer.stop()
        silent.close()


def test_a_backlog_larger_than_one_read_is_taken_whole(
    db: Database, ingest: IngestService, tmp_path: Path
) -> None:
    """Four megabytes arrive at once: the session reads at most a packet and a little more
    before handling what it has, and still takes every message."""
    ca = FleetCA(tmp_path)
    topic = b"fg/d/00000000-0000-4000-8000-000000000001/telemetry"
    payload = b"{" + b" " * 1000 + b"}"
    body = len(topic).to_bytes(2, "big") + topic + b"\x00" + payload  # QoS 0, no properties
    flood = _ScriptedBroker(ca, packet(0x30, body) * 4000)
    consumer = _consumer(ingest, ca, flood.port, reconnect_min_s=5, reconnect_max_s=5)
    consumer.start()
    try:
        assert _wait(lambda: consumer.stats.received == 4000, 20), consumer.stats
        assert consumer.stats.connects == 1 and consumer.stats.errors == 0
    finally:
        consumer.stop()
        flood.close()


def test_a_session_taken_over_is_not_taken_back_before_the_longest_backoff(
    db: Database, ingest: IngestService, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    ca = FleetCA(tmp_path)
    fake = _ScriptedBroker(ca, b"\xe0\x01\x8e")  # DISCONNECT: session taken over
    consumer = _consumer(ingest, ca, fake.port, reconnect_min_s=0, reconnect_max_s=3)
    consumer.start()
    try:
        assert _wait(lambda: fake.connections == 1, 15)
        time.sleep(1.5)
        assert fake.connections == 1  # another client holds the session: not knocked off
        assert "took this session over" in caplog.text
        assert _wait(lambda: fake.connections == 2, 10)  # tried again after the longest wait
        gap = fake.connected_at[1] - fake.connected_at[0]
        assert 2.5 < gap < 6
    finally:
        consumer.stop()
        fake.close()


def test_a_broker_that_hangs_up_at_once_is_retried_less_and_less_often(
    db: Database, ingest: IngestService, tmp_path: Path
) -> None:
    ca = FleetCA(tmp_path)
    fake = _ScriptedBroker(ca, b"", hang_up=True)
    consumer = _consumer(ingest, ca, fake.port, reconnect_min_s=1, reconnect_max_s=8)
    consumer.start()
    try:
        assert _wait(lambda: fake.connections >= 4, 20)
        at = fake.connected_at
        gaps = [later - earlier for earlier, later in itertools.pairwise(at)]
        assert gaps[0] < 1.8 and 1.8 < gaps[1] < 3.5 and 3.5 < gaps[2] < 6
    finally:
        consumer.stop()
        fake.close()

