"""How the agent reaches the platform: HTTPS with mutual TLS, or MQTT with mutual TLS.

Both carry the same encoded protocol messages and give the runner the same guarantee:
:meth:`Transport.send_batch` reports a message as ``DELIVERED`` only when the platform
has taken it (HTTP 2xx; MQTT PUBACK at QoS 1), ``REFUSED`` when the platform answered
that it will never take it (HTTP 400, 413, 415 or 422: retrying the same bytes cannot
help), and ``FAILED`` when its fate is unknown (connection lost, timeout,
5xx): the runner keeps it and sends it again after reconnecting. Delivery is therefore
at least once; the platform drops repeats by the report's ``seq``.

A transport never reconnects by itself: the runner owns reconnection (with a jittered
:class:`~fleetguard.agent.backoff.Backoff`) so that a renewed certificate is picked up
by simply building a new transport from the renewed identity.

MQTT 3.1.1 carries no content type; command payloads are sniffed (a JSON object starts
with ``{``, anything else is taken as CBOR) and the decoder's bounds still apply.
"""

from __future__ import annotations

import asyncio
import json
import logging
import ssl
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Protocol
from urllib.parse import urlsplit

import httpx

from fleetguard.agent.enroll import DeviceIdentity, device_client
from fleetguard.core.errors import ConfigurationError, DependencyError
from fleetguard.core.tls import client_context
from fleetguard.protocol import ContentType, TopicKind, device_topic

logger = logging.getLogger(__name__)

DEFAULT_MQTT_PORT = 8883
_HTTP_PATHS = {
    TopicKind.TELEMETRY: "/v1/telemetry",
    TopicKind.HEARTBEAT: "/v1/heartbeat",
    TopicKind.COMMAND_RESULT: "/v1/commands/result",
}
# Answers about the message itself: sending the same bytes again cannot succeed. Every
# other failure (401/403 before a renewal, 404 from an older server, 429, 5xx) is retried.
_REFUSED_STATUS = frozenset({400, 413, 415, 422})
# A command result or heartbeat the server answers 404/409 to (unknown or finished
# command) is not worth keeping either; telemetry is history and is never dropped so.
_RETRYABLE_4XX = frozenset({401, 403, 408, 425, 429})


class TransportError(DependencyError):
    """The platform could not be reached, or the connection broke."""

    code = "agent_transport_failed"


class SendOutcome(StrEnum):
    DELIVERED = "delivered"  # the platform has it
    REFUSED = "refused"  # the platform will never take these bytes: do not send again
    FAILED = "failed"  # unknown: keep it and send again later


@dataclass(frozen=True, slots=True)
class Outgoing:
    payload: bytes
    content_type: ContentType


@dataclass(frozen=True, slots=True)
class InboundCommand:
    payload: bytes
    content_type: ContentType


class Transport(Protocol):
    """One connection to the platform, built from one identity; the runner reconnects."""

    @property
    def name(self) -> str: ...

    @property
    def connected(self) -> bool: ...

    async def connect(self) -> None:
        """Open the connection; raises :class:`TransportError` if it cannot."""

    async def close(self) -> None:
        """Close the connection; safe to call twice and after a failure."""

    async def send_batch(
        self, kind: TopicKind, messages: Sequence[Outgoing]
    ) -> list[SendOutcome]:
        """Send in order; one outcome per message, in the same order."""

    async def receive_commands(self, wait_s: float) -> list[InboundCommand]:
        """Commands for this device, waiting up to ``wait_s`` for the first one."""


def sniff_content_type(payload: bytes) -> ContentType:
    return ContentType.JSON if payload[:1] == b"{" else ContentType.CBOR


# -- HTTPS ------------------------------------------------------------------------------


class HttpsTransport:
    """Requests to the device endpoint over mutual TLS; commands are polled.

    The httpx client is synchronous (the one :func:`device_client` builds, trusting the
    fleet CA only) and runs in a worker thread, one request at a time.
    """

    def __init__(
        self, identity: DeviceIdentity, *, base_url: str | None = None, timeout_s: float = 30.0
    ) -> None:
        self._identity = identity
        self._base_url = (base_url or identity.server).rstrip("/")
        self._timeout = timeout_s
        self._client: httpx.Client | None = None
        self._lock = asyncio.Lock()

    @property
    def name(self) -> str:
        return "https"

    @property
    def connected(self) -> bool:
        return self._client is not None

    async def connect(self) -> None:
        def build() -> httpx.Client:
            client = device_client(self._identity)
            client.base_url = httpx.URL(self._base_url)
            client.timeout = httpx.Timeout(self._timeout)
            return client

        try:
            self._client = await asyncio.to_thread(build)
        except (OSError, ssl.SSLError, ValueError) as exc:
            raise TransportError(f"cannot load the device identity: {exc}") from exc

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await asyncio.to_thread(client.close)

    async def send_batch(
        self, kind: TopicKind, messages: Sequence[Outgoing]
    ) -> list[SendOutcome]:
        path = _HTTP_PATHS.get(kind)
        if path is None:
            raise ConfigurationError(f"a device does not send {kind.value} messages")
        outcomes: list[SendOutcome] = []
        strict = kind is TopicKind.TELEMETRY
        for message in messages:
            outcome = await self._post(path, message, strict=strict)
            outcomes.append(outcome)
            if outcome is SendOutcome.FAILED:
                break
        outcomes.extend(SendOutcome.FAILED for _ in range(len(messages) - len(outcomes)))
        return outcomes

    async def _post(self, path: str, message: Outgoing, *, strict: bool) -> SendOutcome:
        client = self._client
        if client is None:
            return SendOutcome.FAILED
        headers = {"Content-Type": message.content_type.value}
        try:
            async with self._lock:
                response = await asyncio.to_thread(
                    client.post, path, content=message.payload, headers=headers
                )
        except httpx.HTTPError as exc:
            logger.info("POST %s failed: %s", path, exc)
            await self.close()
            return SendOutcome.FAILED
        status = response.status_code
        if 200 <= status < 300:
            return SendOutcome.DELIVERED
        if status in _REFUSED_STATUS or (
            not strict and 400 <= status < 500 and status not in _RETRYABLE_4XX
        ):
            logger.warning("the platform refused a message on %s: %s %s", path, status,
                           _error_text(response))
            return SendOutcome.REFUSED
        logger.info("POST %s: HTTP %s %s; will retry", path, status, _error_text(response))
        return SendOutcome.FAILED

    async def receive_commands(self, wait_s: float) -> list[InboundCommand]:
        client = self._client
        if client is None:
            raise TransportError("not connected")
        try:
            async with self._lock:
                response = await asyncio.to_thread(client.get, "/v1/commands")
        except httpx.HTTPError as exc:
            await self.close()
            raise TransportError(f"cannot poll for commands: {exc}") from exc
        if response.status_code != 200:
            raise TransportError(f"polling for commands: HTTP {response.status_code}")
        try:
            items = response.json()
        except ValueError as exc:
            raise TransportError("the command list is not JSON") from exc
        if isinstance(items, dict):  # tolerate {"commands": [...]}
            items = items.get("commands", [])
        if not isinstance(items, list):
            raise TransportError("the command list is not a list")
        # Each item is re-encoded and goes through the bounded decoder like any payload.
        return [
            InboundCommand(json.dumps(item).encode(), ContentType.JSON) for item in items[:64]
        ]


def _error_text(response: httpx.Response) -> str:
    try:
        error = response.json()["error"]
        return f"{error['code']}: {error['message']}"
    except (ValueError, KeyError, TypeError):
        return response.text[:200]


# -- MQTT -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BrokerAddress:
    host: str
    port: int

    @classmethod
    def parse(cls, url: str) -> BrokerAddress:
        """``mqtts://host:port`` (port 8883 when left out); plaintext is refused."""
        parts = urlsplit(url if "://" in url else f"mqtts://{url}")
        if parts.scheme not in ("mqtts", "ssl", "tls"):
            raise ConfigurationError("the broker must be mqtts:// (mutual TLS only)")
        if not parts.hostname:
            raise ConfigurationError(f"no host in broker address {url!r}")
        return cls(parts.hostname, parts.port or DEFAULT_MQTT_PORT)


class MqttTransport:
    """paho-mqtt 2.x over mutual TLS, QoS 1, one fresh client per connection.

    paho runs its network loop in its own thread; its callbacks are handed to the
    asyncio loop with ``call_soon_threadsafe``. paho's own reconnection is disabled in
    effect: when the connection drops, pending publishes fail and :attr:`connected` goes
    false; the runner closes this transport and builds a new one after a backoff delay.
    """

    def __init__(
        self,
        identity: DeviceIdentity,
        broker: BrokerAddress,
        *,
        keepalive_s: int = 60,
        timeout_s: float = 30.0,
        max_commands: int = 64,
    ) -> None:
        self._identity = identity
        self._broker = broker
        self._keepalive = keepalive_s
        self._timeout = timeout_s
        self._client: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._connected = False
        self._lock = threading.Lock()
        self._pending: dict[int, asyncio.Future[bool]] = {}
        self._early: set[int] = set()
        self._commands: asyncio.Queue[InboundCommand] = asyncio.Queue(max_commands)
        self._connack: asyncio.Future[int] | None = None
        self._suback: asyncio.Future[list[int]] | None = None

    @property
    def name(self) -> str:
        return "mqtt"

    @property
    def connected(self) -> bool:
        return self._connected

    def topic(self, kind: TopicKind) -> str:
        from uuid import UUID

        return device_topic(UUID(self._identity.device_id), kind)

    def _tls_context(self) -> ssl.SSLContext:
        return client_context(ca_file=self._identity.ca_path,
                              cert_file=self._identity.cert_path,
                              key_file=self._identity.key_path)

    async def connect(self) -> None:
        import paho.mqtt.client as mqtt
        from paho.mqtt.enums import CallbackAPIVersion

        loop = asyncio.get_running_loop()
        self._loop = loop
        self._connack = loop.create_future()
        client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=self._identity.device_id,
            protocol=mqtt.MQTTv311,
            clean_session=True,
        )
        try:
            client.tls_set_context(self._tls_context())
        except (OSError, ssl.SSLError) as exc:
            raise TransportError(f"cannot load the device identity: {exc}") from exc
        client.reconnect_delay_set(min_delay=3600, max_delay=3600)  # the runner reconnects
        client.max_inflight_messages_set(64)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        client.on_subscribe = self._on_subscribe
        client.on_message = self._on_message
        self._client = client
        try:
            await asyncio.to_thread(
                client.connect, self._broker.host, self._broker.port, self._keepalive
            )
        except (OSError, ssl.SSLError, ValueError) as exc:
            self._client = None
            raise TransportError(f"cannot reach the broker {self._broker.host}:"
                                 f"{self._broker.port}: {exc}") from exc
        client.loop_start()
        try:
            async with asyncio.timeout(self._timeout):
                code = await self._connack
            if code != 0:
                raise TransportError(f"the broker refused the connection (reason {code})")
            self._suback = loop.create_future()
            result, _ = client.subscribe(self.topic(TopicKind.COMMAND), qos=1)
            if result != mqtt.MQTT_ERR_SUCCESS:
                raise TransportError(f"cannot subscribe to commands (rc {result})")
            async with asyncio.timeout(self._timeout):
                granted = await self._suback
            if not granted or granted[0] >= 0x80:
                raise TransportError("the broker refused the command subscription")
        except TimeoutError as exc:
            await self.close()
            raise TransportError("the broker did not answer in time") from exc
        except TransportError:
            await self.close()
            raise
        self._connected = True

    async def close(self) -> None:
        client, self._client = self._client, None
        self._connected = False
        if client is None:
            return

        def stop() -> None:
            try:
                client.disconnect()
            finally:
                client.loop_stop()

        await asyncio.to_thread(stop)
        self._fail_pending()

    async def send_batch(
        self, kind: TopicKind, messages: Sequence[Outgoing]
    ) -> list[SendOutcome]:
        import paho.mqtt.client as mqtt

        client = self._client
        if client is None or not self._connected or self._loop is None:
            return [SendOutcome.FAILED] * len(messages)
        topic = self.topic(kind)
        futures: list[asyncio.Future[bool] | None] = []
        for message in messages:
            info = client.publish(topic, message.payload, qos=1)
            if info.rc != mqtt.MQTT_ERR_SUCCESS:
                futures.append(None)
                break
            future: asyncio.Future[bool] = self._loop.create_future()
            with self._lock:
                if info.mid in self._early:
                    self._early.discard(info.mid)
                    future.set_result(True)
                else:
                    self._pending[info.mid] = future
            futures.append(future)
        outcomes: list[SendOutcome] = []
        for waiting in futures:
            if waiting is None:
                break
            try:
                async with asyncio.timeout(self._timeout):
                    delivered = await waiting
            except TimeoutError:
                delivered = False
            if not delivered:
                break
            outcomes.append(SendOutcome.DELIVERED)
        if len(outcomes) < len(messages):
            # Something did not come back: the connection is not to be trusted any more.
            self._connected = False
        outcomes.extend(SendOutcome.FAILED for _ in range(len(messages) - len(outcomes)))
        return outcomes

    async def receive_commands(self, wait_s: float) -> list[InboundCommand]:
        commands: list[InboundCommand] = []
        try:
            async with asyncio.timeout(wait_s):
                commands.append(await self._commands.get())
        except TimeoutError:
            return commands
        while not self._commands.empty():
            commands.append(self._commands.get_nowait())
        return commands

    # -- paho callbacks (paho's network thread) ------------------------------------------

    def _call(self, fn: Any, *args: Any) -> None:
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(fn, *args)

    def _on_connect(self, _c: Any, _u: Any, _flags: Any, reason: Any, _p: Any) -> None:
        code = int(reason.value) if hasattr(reason, "value") else int(reason)
        connack = self._connack
        if connack is not None:
            self._call(_settle, connack, code)

    def _on_subscribe(self, _c: Any, _u: Any, _mid: int, reasons: Any, _p: Any) -> None:
        suback = self._suback
        codes = [int(r.value) if hasattr(r, "value") else int(r) for r in reasons]
        if suback is not None:
            self._call(_settle, suback, codes)

    def _on_publish(self, _c: Any, _u: Any, mid: int, _reason: Any, _p: Any) -> None:
        with self._lock:
            waiting = self._pending.pop(mid, None)
            if waiting is None:
                self._early.add(mid)
                return
        self._call(_settle, waiting, True)

    def _on_message(self, _c: Any, _u: Any, message: Any) -> None:
        payload = bytes(message.payload)
        command = InboundCommand(payload, sniff_content_type(payload))
        self._call(self._enqueue_command, command)

    def _enqueue_command(self, command: InboundCommand) -> None:
        try:
            self._commands.put_nowait(command)
        except asyncio.QueueFull:
            logger.warning("command queue full: dropped a command")

    def _on_disconnect(self, _c: Any, _u: Any, _flags: Any, reason: Any, _p: Any) -> None:
        self._connected = False
        logger.info("disconnected from the broker: %s", reason)
        connack = self._connack
        if connack is not None:
            self._call(_settle, connack, -1)
        self._call(self._fail_pending)

    def _fail_pending(self) -> None:
        with self._lock:
            pending, self._pending = self._pending, {}
            self._early.clear()
        for future in pending.values():
            _settle(future, False)


def _settle(future: asyncio.Future[Any], value: Any) -> None:
    if not future.done():
        future.set_result(value)
