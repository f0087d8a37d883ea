"""Consume device telemetry from the MQTT broker as the platform's service identity.

Subscribes (QoS 1) to ``fg/d/+/telemetry`` and ``fg/d/+/heartbeat`` over mutual TLS and
feeds every message to an :class:`IngestService`. The device id comes from the topic:
the broker's permissions let a device publish only under its own uuid, so the topic is
as good as its certificate. Nothing a device sends can stop the consumer: a bad topic
or payload is counted and dropped, and an exception in the handler is logged.

Delivery: a message is acknowledged (PUBACK) only once it is settled in the database:
its batch committed (see ``IngestService.submit``'s ``on_stored``). A refused payload is
acknowledged at once (it is counted; sending it again would not help). If the process
dies, every message it had not acknowledged is still the broker's: the session is
persistent (``clean_start`` false, with an expiry), so the broker sends those messages
again when the consumer reconnects with the same client id, and messages published
while it is away wait there too. A message stored just before a crash and sent again
is a duplicate, which ingestion recognises by (device, boot, seq).

The consumer asks the broker for up to ``receive_maximum`` unacknowledged messages in
flight (MQTT 5 Receive Maximum), enough to fill the writer's batches while earlier ones
commit; a full ingest queue blocks the network thread, which holds the broker back
(backpressure). The broker keeps what it cannot send yet in the session's queue, whose
bound is ``max_queued_messages`` in the generated ``mosquitto.conf``. An acknowledgement
is only sent on the connection that received the message: after a reconnect the broker
sends the unacknowledged messages again, and those are acknowledged instead. Reconnects
back off from ``reconnect_min_s`` to ``reconnect_max_s`` (paho's own loop).

The content type is the MQTT 5 ``content-type`` property when present; otherwise it is
recognised from the first byte (a JSON message is an object, ``{``; anything else is
taken as CBOR, and a wrong guess is refused as malformed like any bad payload).
"""

from __future__ import annotations

import logging
import ssl
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from fleetguard.protocol import (
    ContentType,
    MessageRejectedError,
    TopicKind,
    parse_topic,
    subscription,
)
from fleetguard.telemetry.errors import IngestStoppedError
from fleetguard.telemetry.service import IngestService

log = logging.getLogger("fleetguard.telemetry.mqtt")

SESSION_EXPIRY_S = 24 * 3600


@dataclass(frozen=True, slots=True)
class MqttSettings:
    host: str
    port: int
    ca_file: Path
    cert_file: Path
    key_file: Path
    client_id: str = "fleetguard-ingest"
    keepalive_s: int = 30
    reconnect_min_s: int = 1
    reconnect_max_s: int = 60
    shared_group: str | None = None  # "$share/<group>/..." to spread over several consumers
    server_hostname: str | None = None  # TLS name to check, when it differs from host
    receive_maximum: int = 10_000  # unacknowledged messages in flight (MQTT 5, max 65535)


@dataclass
class ConsumerStats:
    received: int = 0
    accepted: int = 0
    rejected: int = 0  # refused payloads (counted per device by the ingest service too)
    bad_topics: int = 0  # no device in the topic: counted here only
    errors: int = 0
    connects: int = 0
    stale_acks: int = 0  # stored after its connection was gone: the broker sends it again
    by_reason: dict[str, int] = field(default_factory=dict)


class MqttConsumer:
    """``start()`` connects in the background and keeps reconnecting; ``stop()`` ends it."""

    def __init__(self, ingest: IngestService, settings: MqttSettings) -> None:
        self.ingest = ingest
        self.settings = settings
        self.stats = ConsumerStats()
        self._connected = threading.Event()
        self._lock = threading.Lock()
        self._generation = 0  # one per connection: acknowledgements never cross one
        self._client = self._make_client()

    def _make_client(self) -> mqtt.Client:
        s = self.settings
        client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2, client_id=s.client_id,
            protocol=mqtt.MQTTv5, manual_ack=True,
        )
        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(s.ca_file))
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.load_cert_chain(str(s.cert_file), str(s.key_file))
        client.tls_set_context(context)
        client.reconnect_delay_set(min_delay=s.reconnect_min_s, max_delay=s.reconnect_max_s)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        return client

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    def wait_connected(self, timeout: float) -> bool:
        return self._connected.wait(timeout)

    def start(self) -> None:
        s = self.settings
        self.ingest.start()
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        props.SessionExpiryInterval = SESSION_EXPIRY_S
        props.ReceiveMaximum = max(1, min(self.settings.receive_maximum, 65535))
        self._client.connect_async(s.host, s.port, keepalive=s.keepalive_s, clean_start=False,
                                   properties=props)
        self._client.loop_start()

    def stop(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()
        self._connected.clear()

    # -- callbacks (paho's network thread) ------------------------------------------

    def _topics(self) -> list[str]:
        topics = [subscription(TopicKind.TELEMETRY), subscription(TopicKind.HEARTBEAT)]
        group = self.settings.shared_group
        return [f"$share/{group}/{t}" for t in topics] if group else topics

    def _on_connect(
        self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, properties: Any
    ) -> None:
        if getattr(reason, "is_failure", False):
            log.warning("broker refused the connection: %s", reason)
            return
        with self._lock:
            self.stats.connects += 1
            self._generation += 1
        client.subscribe([(topic, 1) for topic in self._topics()])
        self._connected.set()
        log.info("connected to the broker at %s:%d", self.settings.host, self.settings.port)

    def _on_disconnect(
        self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, properties: Any
    ) -> None:
        with self._lock:
            self._generation += 1
        self._connected.clear()
        log.warning("disconnected from the broker (%s); reconnecting", reason)

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        try:
            self._handle(message)
        except Exception:  # nothing a device sends may stop the consumer
            with self._lock:
                self.stats.errors += 1
            log.exception("unexpected error handling a message on %r", message.topic[:128])

    def _handle(self, message: mqtt.MQTTMessage) -> None:
        with self._lock:
            self.stats.received += 1
            generation = self._generation
        ack = self._acker(message.mid, message.qos, generation)
        try:
            parsed = parse_topic(message.topic)
        except MessageRejectedError as exc:
            self._count(exc.reason.value, bad_topic=True)
            ack()
            return
        payload = bytes(message.payload)
        try:
            self.ingest.submit(str(parsed.device_id), parsed.message_kind, payload,
                               _content_type(message, payload), timeout=None, on_stored=ack)
        except MessageRejectedError as exc:
            self._count(exc.reason.value)
            ack()
            return
        except IngestStoppedError:  # not acknowledged: the broker keeps it for next time
            log.warning("ingestion stopped; leaving a message of %s with the broker",
                        parsed.device_id)
            return
        with self._lock:
            self.stats.accepted += 1

    def _acker(self, mid: int, qos: int, generation: int) -> Callable[[], None]:
        def ack() -> None:
            with self._lock:
                current = generation == self._generation
            if current and qos > 0:
                self._client.ack(mid, qos)
            elif qos > 0:
                with self._lock:
                    self.stats.stale_acks += 1

        return ack

    def _count(self, reason: str, *, bad_topic: bool = False) -> None:
        with self._lock:
            if bad_topic:
                self.stats.bad_topics += 1
            else:
                self.stats.rejected += 1
            self.stats.by_reason[reason] = self.stats.by_reason.get(reason, 0) + 1


def _content_type(message: mqtt.MQTTMessage, payload: bytes) -> str:
    props = getattr(message, "properties", None)
    declared = getattr(props, "ContentType", None) if props is not None else None
    if isinstance(declared, str) and declared:
        return declared
    head = payload.lstrip(b" \t\r\n")[:1]
    return ContentType.JSON.value if head == b"{" else ContentType.CBOR.value
