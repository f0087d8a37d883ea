"""A minimal asyncio MQTT 3.1.1 client for the simulator: CONNECT, QoS 1 PUBLISH/PUBACK,
SUBSCRIBE, incoming QoS 0/1 PUBLISH, keep-alive pings.

One paho client per device costs a thread (or a loop of its own) and far more memory;
this one is a protocol object on the shared event loop. It is for the simulator only:
the agent uses paho-mqtt.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import struct
from collections.abc import Callable

from fleetguard.protocol.mqtt_wire import (
    MalformedVariableIntError,
    decode_varint,
    packet,
    utf8_field,
)
from fleetguard.sim._tls import TlsClientProtocol

_CONNECT, _CONNACK, _PUBLISH, _PUBACK = 0x10, 0x20, 0x30, 0x40
_SUBSCRIBE, _SUBACK, _PINGREQ, _PINGRESP, _DISCONNECT = 0x82, 0x90, 0xC0, 0xD0, 0xE0


class MqttError(ConnectionError):
    pass


class MiniMqttClient(TlsClientProtocol):
    def __init__(
        self,
        context: ssl.SSLContext,
        server_hostname: str,
        *,
        client_id: str,
        keepalive_s: int = 60,
        on_message: Callable[[str, bytes], None] | None = None,
    ) -> None:
        super().__init__(context, server_hostname)
        self._client_id = client_id
        self._keepalive = keepalive_s
        self._on_message = on_message
        self._buffer = bytearray()
        self._next_id = 0
        self._waiting: dict[int, asyncio.Future[int]] = {}
        self._connack: asyncio.Future[int] | None = None
        self._ping: asyncio.TimerHandle | None = None

    @classmethod
    async def connect(
        cls, host: str, port: int, context: ssl.SSLContext, *, client_id: str,
        keepalive_s: int = 60, on_message: Callable[[str, bytes], None] | None = None,
        timeout_s: float = 30.0,
    ) -> MiniMqttClient:
        loop = asyncio.get_running_loop()
        async with asyncio.timeout(timeout_s):
            _, client = await loop.create_connection(
                lambda: cls(context, host, client_id=client_id, keepalive_s=keepalive_s,
                            on_message=on_message),
                host, port,
            )
            await client.handshake
            code = await client._mqtt_connect()
        if code != 0:
            client.close()
            raise MqttError(f"the broker refused the connection (CONNACK {code})")
        return client

    async def _mqtt_connect(self) -> int:
        self._connack = asyncio.get_running_loop().create_future()
        body = utf8_field("MQTT") + bytes([4, 0x02]) + struct.pack("!H", self._keepalive)
        self.send(packet(_CONNECT, body + utf8_field(self._client_id)))
        code = await self._connack
        self._schedule_ping()
        return code

    def _schedule_ping(self) -> None:
        if self._keepalive > 0:
            loop = asyncio.get_running_loop()
            self._ping = loop.call_later(self._keepalive * 0.75, self._send_ping)

    def _send_ping(self) -> None:
        if self.is_open:
            try:
                self.send(bytes([_PINGREQ, 0]))
            except ConnectionError:
                return
            self._schedule_ping()

    def _packet_id(self) -> int:
        self._next_id = self._next_id % 65535 + 1
        return self._next_id

    async def publish(self, topic: str, payload: bytes, *, timeout_s: float = 30.0) -> None:
        """QoS 1: returns when the broker's PUBACK arrives."""
        packet_id = self._packet_id()
        future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._waiting[packet_id] = future
        try:
            self.send(packet(_PUBLISH | 0x02, utf8_field(topic) + struct.pack("!H", packet_id)
                              + payload))
            async with asyncio.timeout(timeout_s):
                await future
        finally:
            self._waiting.pop(packet_id, None)

    async def subscribe(self, topic: str, *, timeout_s: float = 30.0) -> int:
        packet_id = self._packet_id()
        future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._waiting[packet_id] = future
        try:
            self.send(packet(_SUBSCRIBE,
                             struct.pack("!H", packet_id) + utf8_field(topic) + b"\x01"))
            async with asyncio.timeout(timeout_s):
                granted = await future
        finally:
            self._waiting.pop(packet_id, None)
        if granted >= 0x80:
            raise MqttError(f"subscription to {topic} refused")
        return granted

    def disconnect(self) -> None:
        if self.is_open:
            with contextlib.suppress(ConnectionError):
                self.send(bytes([_DISCONNECT, 0]))
        self.close()

    # -- incoming --------------------------------------------------------------------------

    def plaintext_received(self, data: bytes) -> None:
        self._buffer += data
        while True:
            taken = self._take_packet()
            if taken is None:
                return
            self._handle(*taken)

    def _take_packet(self) -> tuple[int, bytes] | None:
        buf = self._buffer
        try:
            found = decode_varint(buf, 1, len(buf))
        except MalformedVariableIntError:
            self.close()
            return None
        if found is None:
            return None
        length, index = found
        if len(buf) < index + length:
            return None
        header, body = buf[0], bytes(buf[index:index + length])
        del buf[:index + length]
        return header, body

    def _handle(self, header: int, body: bytes) -> None:
        kind = header & 0xF0
        if kind == _CONNACK and self._connack is not None and not self._connack.done():
            self._connack.set_result(body[1] if len(body) >= 2 else 255)
        elif kind == _PUBACK and len(body) >= 2:
            self._settle(struct.unpack("!H", body[:2])[0], 0)
        elif kind == _SUBACK and len(body) >= 3:
            self._settle(struct.unpack("!H", body[:2])[0], body[2])
        elif kind == _PUBLISH:
            self._incoming_publish(header, body)

    def _incoming_publish(self, header: int, body: bytes) -> None:
        qos = (header >> 1) & 0x03
        (topic_len,) = struct.unpack("!H", body[:2])
        topic = body[2:2 + topic_len].decode(errors="replace")
        offset = 2 + topic_len
        if qos:
            packet_id = body[offset:offset + 2]
            offset += 2
            try:
                self.send(bytes([_PUBACK, 2]) + packet_id)
            except ConnectionError:
                return
        if self._on_message is not None:
            self._on_message(topic, body[offset:])

    def _settle(self, packet_id: int, value: int) -> None:
        future = self._waiting.get(packet_id)
        if future is not None and not future.done():
            future.set_result(value)

    def on_closed(self) -> None:
        if self._ping is not None:
            self._ping.cancel()
        if self._connack is not None and not self._connack.done():
            self._connack.set_exception(MqttError("connection closed"))
        for future in self._waiting.values():
            if not future.done():
                future.set_exception(MqttError("connection closed"))
