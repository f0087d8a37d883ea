"""Consume device telemetry from the MQTT broker as the platform's service identity.

Subscribes (QoS 1) to ``fg/d/+/telemetry``, ``fg/d/+/heartbeat`` and ``fg/d/+/cmd/result``
over mutual TLS and feeds every message to an :class:`IngestService`. The device id comes
from the topic: the broker's permissions let a device publish only under its own uuid, so
the topic is as good as its certificate. Nothing a device sends can stop the consumer: a
bad topic or payload is counted and dropped, and an exception in the handler is logged.

Delivery: a message is acknowledged (PUBACK) only once it is settled in the database:
its batch committed (see ``IngestService.submit``'s ``on_stored``). A refused payload is
acknowledged at once (it is counted; sending it again would not help). If the process
dies, every message it had not acknowledged is still the broker's: the session is
persistent (``clean_start`` false, with an expiry), so the broker sends those messages
again when the consumer reconnects with the same client id, and messages published
while it is away wait there too. ``fleetguard broker`` replaces every client id by the
certificate's CN, so there the session is the identity's, whatever ``client_id`` says:
one consumer per certificate (a second one takes the first one's place), and consumers
sharing a subscription (``shared_group``) each need a certificate of their own. A message
stored just before a crash and sent again is a duplicate, which ingestion recognises by
(device, boot, seq).

The consumer asks the broker for up to ``receive_maximum`` unacknowledged messages in
flight (MQTT 5 Receive Maximum), enough to fill the writer's batches while earlier ones
commit; a full ingest queue blocks the network thread, which holds the broker back
(backpressure). The broker keeps what it cannot send yet in the session's queue, whose
bounds are ``max_queued_messages`` and ``max_queued_bytes`` in the generated
``mosquitto.conf`` (whichever comes first; past it the broker drops, and ``fleetguard
broker`` logs which client it drops for). An acknowledgement
is only sent on the connection that received the message: after a reconnect the broker
sends the unacknowledged messages again, and those are acknowledged instead. Reconnects
back off from ``reconnect_min_s`` to ``reconnect_max_s``.

The MQTT session is fleetguard's own (``telemetry._mqtt5``): one thread reads, hands each
message to ingestion and sends the acknowledgements the writer releases, in batches.

The content type is the MQTT 5 ``content-type`` property when present; otherwise it is
recognised from the first byte (a JSON message is an object, ``{``; anything else is
taken as CBOR, and a wrong guess is refused as malformed like any bad payload).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from fleetguard.core.tls import client_context
from fleetguard.protocol import (
    ContentType,
    MessageKind,
    MessageRejectedError,
    TopicKind,
    parse_topic,
    subscription,
)
from fleetguard.telemetry._mqtt5 import Mqtt5Session, Publish, SessionSettings
from fleetguard.telemetry.errors import IngestStoppedError
from fleetguard.telemetry.ingest import IngestService

log = logging.getLogger("fleetguard.telemetry.mqtt")

SESSION_EXPIRY_S = 24 * 3600
_TOPICS_REMEMBERED = 100_000  # past this the memo starts over


@dataclass(frozen=True, slots=True)
class MqttSettings:
    host: str
    port: int
    ca_file: Path
    cert_file: Path
    key_file: Path
    client_id: str = "fleetguard-ingest"  # fleetguard's broker uses the certificate's CN
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
        self._stats = ConsumerStats()  # written by the session's thread only
        # topic -> (device id, kind): a device's topics come back with every message
        self._topics_seen: dict[str, tuple[str, MessageKind]] = {}
        self._connected = threading.Event()
        self._thread: threading.Thread | None = None
        self._session = Mqtt5Session(
            self._session_settings(), self._topics(), self._on_publish,
            on_connected=self._on_connected, on_disconnected=self._on_disconnected,
            reconnect_min_s=settings.reconnect_min_s, reconnect_max_s=settings.reconnect_max_s,
        )

    def _session_settings(self) -> SessionSettings:
        s = self.settings
        context = client_context(ca_file=s.ca_file, cert_file=s.cert_file, key_file=s.key_file)
        return SessionSettings(
            host=s.host, port=s.port, context=context, client_id=s.client_id,
            server_hostname=s.server_hostname, keepalive_s=s.keepalive_s,
            session_expiry_s=SESSION_EXPIRY_S, receive_maximum=s.receive_maximum,
        )

    @property
    def stats(self) -> ConsumerStats:
        stats = ConsumerStats(**{**self._stats.__dict__, "by_reason": dict(self._stats.by_reason)})
        stats.stale_acks = self._session.stale_acks
        return stats

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    def wait_connected(self, timeout: float) -> bool:
        return self._connected.wait(timeout)

    def start(self) -> None:
        self.ingest.start()
        if self._thread is None:
            self._thread = threading.Thread(target=self._session.run, name="fleetguard-mqtt",
                                            daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._session.stop()
        if self._thread is not None:
            self._thread.join(timeout=30)
            if not self._thread.is_alive():
                self._session.close()
        self._connected.clear()

    # -- the session's thread -----------------------------------------------------------

    def _topics(self) -> list[str]:
        topics = [subscription(TopicKind.TELEMETRY), subscription(TopicKind.HEARTBEAT),
                  subscription(TopicKind.COMMAND_RESULT)]
        group = self.settings.shared_group
        return [f"$share/{group}/{t}" for t in topics] if group else topics

    def _on_connected(self, session_present: bool) -> None:
        self._stats.connects += 1
        self._connected.set()
        log.info("connected to the broker at %s:%d (session %s)", self.settings.host,
                 self.settings.port, "resumed" if session_present else "new")

    def _on_disconnected(self, error: BaseException | None) -> None:
        self._connected.clear()
        if error is not None:
            log.warning("disconnected from the broker (%s); reconnecting", error)

    def _on_publish(self, message: Publish, generation: int) -> None:
        try:
            self._handle(message, generation)
        except Exception:  # nothing a device sends may stop the consumer
            self._stats.errors += 1
            log.exception("unexpected error handling a message on %r", message.topic[:128])

    def _handle(self, message: Publish, generation: int) -> None:
        self._stats.received += 1
        ack = self._acker(message.packet_id, generation)
        known = self._topics_seen.get(message.topic)
        if known is None:
            try:
                parsed = parse_topic(message.topic)
            except MessageRejectedError as exc:
                self._count(exc.reason.value, bad_topic=True)
                ack()
                return
            known = (str(parsed.device_id), parsed.message_kind)
            if len(self._topics_seen) >= _TOPICS_REMEMBERED:
                self._topics_seen.clear()
            self._topics_seen[message.topic] = known
        device_id, kind = known
        payload = message.payload
        content_type = message.content_type or _sniff_content_type(payload)
        try:
            if kind is MessageKind.COMMAND_RESULT:  # a refused result is counted by ingestion
                self.ingest.submit_command_result(device_id, payload, content_type,
                                                  timeout=None, on_stored=ack)
            else:
                self.ingest.submit(device_id, kind, payload, content_type, timeout=None,
                                   on_stored=ack)
        except MessageRejectedError as exc:
            self._count(exc.reason.value)
            ack()
            return
        except IngestStoppedError:  # not acknowledged: the broker keeps it for next time
            log.warning("ingestion stopped; leaving a message of %s with the broker",
                        device_id)
            return
        self._stats.accepted += 1

    def _acker(self, packet_id: int, generation: int) -> Callable[[], None]:
        session = self._session
        if not packet_id:  # QoS 0: nothing to acknowledge
            return _nothing
        return lambda: session.ack(generation, packet_id)

    def _count(self, reason: str, *, bad_topic: bool = False) -> None:
        if bad_topic:
            self._stats.bad_topics += 1
        else:
            self._stats.rejected += 1
        self._stats.by_reason[reason] = self._stats.by_reason.get(reason, 0) + 1


def _nothing() -> None:
    return None


def _sniff_content_type(payload: bytes) -> str:
    """No MQTT 5 content type (an MQTT 3.1.1 device): a JSON message is an object."""
    head = payload[:1]
    if head in b" \t\r\n" and head:  # leading whitespace is rare: only then strip (a copy)
        head = payload.lstrip(b" \t\r\n")[:1]
    return ContentType.JSON.value if head == b"{" else ContentType.CBOR.value
