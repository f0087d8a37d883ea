"""A synchronous client for Mosquitto's ``$CONTROL/dynamic-security/v1`` API.

It connects over mutual TLS as the broker's admin identity, subscribes to the response
topic, and sends each request with a ``correlationData`` per command; the reply is
matched on it, so several threads' requests (or stray replies) never mix. paho-mqtt's
network thread reconnects on its own; a request while the link is down fails at once.
The broker replaces the client id by the certificate's CN, so there is one connection
per identity: share one admin rather than connect another.
"""

from __future__ import annotations

import json
import logging
import secrets
import ssl
import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode

from fleetguard.broker._acl import CONTROL_TOPIC, RESPONSE_TOPIC
from fleetguard.broker.errors import (
    BrokerUnavailableError,
    DynsecCommandError,
    DynsecTimeoutError,
)
from fleetguard.broker.models import BrokerFiles
from fleetguard.core.tls import client_context

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT = 5.0
MAX_COMMANDS_PER_REQUEST = 200
# A request is one MQTT packet, and the broker disconnects any client, ours too, whose
# packet is over its max_packet_size (at least 256 KiB + 4 KiB): a batch also ends
# before its JSON passes this (200 createRole of a device's six ACLs: 175 KiB).
MAX_REQUEST_BYTES = 128 * 1024
# Time allowed per command of a request, beyond the admin's timeout. The plugin's cost
# per command grows with what it holds: a createRole took 0.7 ms beside 200 roles and
# 7.8 ms beside 10,000 on a 2-core machine, so a batch of 200 needs seconds at fleet size
# (in 2.0.x each changing command rewrites the plugin's whole file; see
# docs/decisions/0015-telemetry-ingestion-one-writer.md).
# A channel that drops answers every pending request at once; this only bounds a broker
# that keeps the connection but stops answering.
SECONDS_PER_COMMAND = 0.1


@dataclass
class _Pending:
    expected: int
    done: threading.Event = field(default_factory=threading.Event)
    responses: dict[int, dict[str, Any]] = field(default_factory=dict)


def _batches(
    commands: Sequence[Mapping[str, Any]],
) -> Iterator[Sequence[Mapping[str, Any]]]:
    """Runs of at most ``MAX_COMMANDS_PER_REQUEST`` commands and, but for a single command
    that is bigger on its own, ``MAX_REQUEST_BYTES`` of JSON (with correlation data)."""
    start, size = 0, 0
    for i, command in enumerate(commands):
        # ', "correlationData": "<16 hex>.<index>"' and the separator: under 48 bytes.
        cost = len(json.dumps(command)) + 48
        if i > start and (i - start >= MAX_COMMANDS_PER_REQUEST
                          or size + cost > MAX_REQUEST_BYTES):
            yield commands[start:i]
            start, size = i, 0
        size += cost
    if start < len(commands):
        yield commands[start:]


class DynsecAdmin:
    """Request/response over ``$CONTROL``; use as a context manager or call ``close``."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        ca_file: str,
        cert_file: str,
        key_file: str,
        client_id: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        self._host, self._port, self._timeout = host, port, timeout
        self._ctx = client_context(ca_file=ca_file, cert_file=cert_file, key_file=key_file)
        self._client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id or f"fleetguard-dynsec-{secrets.token_hex(4)}",
            protocol=mqtt.MQTTv5,
        )
        self._client.tls_set_context(self._ctx)
        self._client.reconnect_delay_set(min_delay=1, max_delay=5)
        self._client.on_connect = self._on_connect
        self._client.on_subscribe = self._on_subscribe
        self._client.on_message = self._on_message
        self._client.on_disconnect = self._on_disconnect
        self._lock = threading.Lock()
        self._ready = threading.Event()
        self._ready_error: str | None = None
        self._pending: dict[str, _Pending] = {}
        self._sub_mid: int | None = None
        self._started = False
        self._closing = False

    @classmethod
    def for_files(cls, files: BrokerFiles, *, timeout: float = DEFAULT_TIMEOUT) -> DynsecAdmin:
        return cls(
            files.connect_host, files.port, ca_file=str(files.ca_bundle),
            cert_file=str(files.admin_cert), key_file=str(files.admin_key), timeout=timeout,
        )

    def __enter__(self) -> DynsecAdmin:
        self.connect()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def connected(self) -> bool:
        return self._ready.is_set()

    # -- link -----------------------------------------------------------------------------

    def connect(self, timeout: float | None = None) -> None:
        """Connect, subscribe to the replies, and wait until both are confirmed."""
        wait = self._timeout if timeout is None else timeout
        try:
            self._client.connect(self._host, self._port, keepalive=30)
        except (OSError, ssl.SSLError) as exc:
            raise BrokerUnavailableError(
                f"cannot reach the broker at {self._host}:{self._port} as the dynsec "
                f"admin: {exc}"
            ) from exc
        self._client.loop_start()
        self._started = True
        if not self._ready.wait(wait):
            problem = self._ready_error or "no CONNACK/SUBACK in time"
            self.close()
            raise BrokerUnavailableError(f"broker control channel not ready: {problem}")

    def close(self) -> None:
        self._closing = True
        if self._started:
            self._client.disconnect()
            self._client.loop_stop()
            self._started = False
        self._ready.clear()
        with self._lock:
            for pending in self._pending.values():
                pending.done.set()

    def _on_connect(
        self, client: mqtt.Client, _u: object, _f: object, rc: ReasonCode, _p: object
    ) -> None:
        if rc.is_failure:
            self._ready_error = f"connection refused: {rc}"
            return
        result, mid = client.subscribe(RESPONSE_TOPIC, qos=1)
        if result != mqtt.MQTT_ERR_SUCCESS:
            self._ready_error = f"subscribe failed: {mqtt.error_string(result)}"
        self._sub_mid = mid

    def _on_subscribe(
        self, _c: mqtt.Client, _u: object, mid: int, codes: list[ReasonCode], _p: object
    ) -> None:
        if mid != self._sub_mid:
            return
        if not codes or codes[0].is_failure:
            self._ready_error = (
                f"subscribing to {RESPONSE_TOPIC} was refused ({codes[0] if codes else '?'}); "
                "is this identity the dynsec admin?"
            )
            return
        self._ready_error = None
        self._ready.set()

    def _on_disconnect(
        self, _c: mqtt.Client, _u: object, _f: object, rc: ReasonCode, _p: object
    ) -> None:
        if self._ready.is_set() and not self._closing:
            log.warning("broker control channel lost (%s); reconnecting", rc)
        self._ready.clear()
        with self._lock:
            for pending in self._pending.values():
                pending.done.set()

    def _on_message(self, _c: mqtt.Client, _u: object, msg: mqtt.MQTTMessage) -> None:
        if msg.topic != RESPONSE_TOPIC:
            return
        try:
            responses = json.loads(msg.payload)["responses"]
        except (ValueError, KeyError, TypeError):
            log.warning("ignoring an unreadable dynsec response")
            return
        if not isinstance(responses, list):
            return
        with self._lock:
            for item in responses:
                if not isinstance(item, dict):
                    continue
                tag = str(item.get("correlationData", ""))
                request_id, _, index = tag.rpartition(".")
                pending = self._pending.get(request_id)
                if pending is None or not index.isdigit():
                    continue
                pending.responses[int(index)] = item
                if len(pending.responses) >= pending.expected:
                    pending.done.set()

    # -- requests -------------------------------------------------------------------------

    def request(
        self, commands: Sequence[Mapping[str, Any]], *, timeout: float | None = None
    ) -> list[dict[str, Any]]:
        """Send commands (in batches), return one response per command, in order.

        Each batch waits ``timeout`` (the admin's, by default) plus ``SECONDS_PER_COMMAND``
        per command for its answer. A response with ``"error"`` is returned, not raised:
        see :meth:`execute`.
        """
        out: list[dict[str, Any]] = []
        for batch in _batches(commands):
            wait = (self._timeout if timeout is None else timeout) + (
                SECONDS_PER_COMMAND * len(batch))
            try:
                out += self._request_once(batch, wait)
            except (DynsecTimeoutError, BrokerUnavailableError):
                # The session can drop and come back right after it first connects
                # (seen on a fresh broker) and the request goes unanswered: a request
                # that only reads is sent once more when the channel is back.
                if not all(str(c.get("command", "")).startswith(("list", "get"))
                           for c in batch) or not self._ready.wait(wait):
                    raise
                out += self._request_once(batch, wait)
        return out

    def _request_once(
        self, commands: Sequence[Mapping[str, Any]], timeout: float
    ) -> list[dict[str, Any]]:
        if not commands:
            return []
        if not self._ready.is_set():
            raise BrokerUnavailableError("the broker control channel is not connected")
        request_id = secrets.token_hex(8)
        tagged = [{**c, "correlationData": f"{request_id}.{i}"} for i, c in enumerate(commands)]
        pending = _Pending(expected=len(tagged))
        with self._lock:
            self._pending[request_id] = pending
        try:
            info = self._client.publish(
                CONTROL_TOPIC, json.dumps({"commands": tagged}), qos=1
            )
            if info.rc != mqtt.MQTT_ERR_SUCCESS:
                raise BrokerUnavailableError(
                    f"could not send a control request: {mqtt.error_string(info.rc)}"
                )
            if not pending.done.wait(timeout):
                names = sorted({str(c.get("command")) for c in commands})
                raise DynsecTimeoutError(
                    f"no dynsec response within {timeout:g} s to {', '.join(names)}"
                )
            if len(pending.responses) < pending.expected:
                raise BrokerUnavailableError("the broker control channel closed mid-request")
            return [pending.responses[i] for i in range(pending.expected)]
        finally:
            with self._lock:
                self._pending.pop(request_id, None)

    def execute(
        self,
        commands: Sequence[Mapping[str, Any]],
        *,
        tolerate: Sequence[str] = (),
        timeout: float | None = None,
    ) -> list[dict[str, Any]]:
        """Like :meth:`request`, but the first error not containing a ``tolerate``
        phrase (case-insensitive) raises :class:`DynsecCommandError`."""
        responses = self.request(commands, timeout=timeout)
        phrases = [t.lower() for t in tolerate]
        for response in responses:
            error = response.get("error")
            if error and not any(p in str(error).lower() for p in phrases):
                raise DynsecCommandError(str(response.get("command")), str(error))
        return responses

    def one(self, command: str, **fields: Any) -> dict[str, Any]:
        """One command; its ``data`` (empty when it has none)."""
        data = self.execute([{"command": command, **fields}])[0].get("data")
        return data if isinstance(data, dict) else {}

    def list_clients(self) -> list[dict[str, Any]]:
        """Every dynsec client with its roles (``verbose``)."""
        data = self.one("listClients", verbose=True, count=-1)
        clients = data.get("clients", [])
        return [c for c in clients if isinstance(c, dict)]

    def list_roles(self) -> list[dict[str, Any]]:
        """Every dynsec role with its ACLs (``verbose``)."""
        data = self.one("listRoles", verbose=True, count=-1)
        roles = data.get("roles", [])
        return [r for r in roles if isinstance(r, dict)]
