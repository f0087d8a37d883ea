"""The MQTT 5 subscriber session behind :class:`~fleetguard.telemetry.mqtt_consumer.MqttConsumer`.

Only what a QoS 1 subscriber needs: CONNECT (persistent session, Receive Maximum),
SUBSCRIBE, incoming PUBLISH at QoS 0/1, PUBACK, keep-alive, DISCONNECT. One thread owns
the TLS socket and does all of its reading and writing; acknowledgements come from other
threads through :meth:`Mqtt5Session.ack` and go out in batches.

Why not paho: at thousands of messages a second paho's per-packet Python (property
objects, callbacks, a lock and a queue per acknowledgement) cost the platform more CPU
than validating and storing the reports together. Here a packet costs a few slices of a
buffer.
"""

from __future__ import annotations

import contextlib
import logging
import selectors
import socket
import ssl
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from fleetguard.protocol.mqtt_wire import (
    MalformedVariableIntError,
    decode_varint,
    encode_varint,
    packet,
    utf8_field,
)

log = logging.getLogger("fleetguard.telemetry.mqtt")

_CONNECT, _CONNACK, _PUBLISH, _PUBACK = 1, 2, 3, 4
_SUBSCRIBE, _SUBACK, _PINGREQ, _PINGRESP, _DISCONNECT = 8, 9, 12, 13, 14

_PROP_SESSION_EXPIRY, _PROP_RECEIVE_MAXIMUM, _PROP_MAXIMUM_PACKET_SIZE = 0x11, 0x21, 0x27
_PROP_CONTENT_TYPE, _PROP_REASON_STRING = 0x03, 0x1F

# Every MQTT 5 property id and how its value is encoded (section 2.2.2.2).
_BYTE, _TWO, _FOUR, _VARINT, _STRING, _BINARY, _PAIR = range(7)
_PROPERTY_TYPES: dict[int, int] = {
    0x01: _BYTE, 0x02: _FOUR, 0x03: _STRING, 0x08: _STRING, 0x09: _BINARY, 0x0B: _VARINT,
    0x11: _FOUR, 0x12: _STRING, 0x13: _TWO, 0x15: _STRING, 0x16: _BINARY, 0x17: _BYTE,
    0x18: _FOUR, 0x19: _BYTE, 0x1A: _STRING, 0x1C: _STRING, 0x1F: _STRING, 0x21: _TWO,
    0x22: _TWO, 0x23: _TWO, 0x24: _BYTE, 0x25: _BYTE, 0x26: _PAIR, 0x27: _FOUR, 0x28: _BYTE,
    0x29: _BYTE, 0x2A: _BYTE,
}
_FIXED_SIZE = {_BYTE: 1, _TWO: 2, _FOUR: 4}
_SESSION_TAKEN_OVER = 0x8E
_STABLE_S = 10.0  # a connection that lasted this long resets the reconnect backoff
_READ_AHEAD = 256 * 1024  # bytes read past a whole packet before the packets are handled


class ProtocolError(ConnectionError):
    """The broker sent something this session cannot take: the connection is dropped."""


class RefusedError(ConnectionError):
    """The broker refused the connection or a subscription (a reason code >= 0x80)."""


class SessionTakenOverError(ConnectionResetError):
    """Another client connected with this session's client id (DISCONNECT reason 0x8E)."""


@dataclass(slots=True)
class Publish:
    topic: str
    payload: bytes
    qos: int
    packet_id: int  # 0 at QoS 0
    content_type: str | None


@dataclass(frozen=True, slots=True)
class SessionSettings:
    host: str
    port: int
    context: ssl.SSLContext
    client_id: str
    server_hostname: str | None = None
    keepalive_s: int = 30
    session_expiry_s: int = 24 * 3600
    receive_maximum: int = 10_000
    maximum_packet_size: int = 1 << 20
    connect_timeout_s: float = 15.0


def _varint_at(data: bytes | bytearray, at: int, end: int) -> tuple[int, int] | None:
    try:
        return decode_varint(data, at, end)
    except MalformedVariableIntError as exc:
        raise ProtocolError(str(exc)) from None


def _read_varint(data: bytes | bytearray, at: int, end: int) -> tuple[int, int]:
    """A variable byte integer that must end before ``end``."""
    found = _varint_at(data, at, end)
    if found is None:
        raise ProtocolError("a variable byte integer runs past its field")
    return found


def _properties(data: bytes | bytearray, at: int, end: int) -> tuple[dict[int, object], int]:
    """Parse a property block starting at ``at``; returns the properties and where it ends."""
    length, at = _read_varint(data, at, end)
    stop = at + length
    if stop > end:
        raise ProtocolError("properties run past the packet")
    props: dict[int, object] = {}
    while at < stop:
        ident = data[at]
        kind = _PROPERTY_TYPES.get(ident)
        at += 1
        if kind is None:
            raise ProtocolError(f"unknown property 0x{ident:02x}")
        if kind in _FIXED_SIZE:
            size = _FIXED_SIZE[kind]
            props[ident] = int.from_bytes(data[at:at + size], "big")
            at += size
        elif kind == _VARINT:
            props[ident], at = _read_varint(data, at, stop)
        else:
            count = 2 if kind == _PAIR else 1
            values = []
            for _ in range(count):
                size = int.from_bytes(data[at:at + 2], "big")
                values.append(bytes(data[at + 2:at + 2 + size]))
                at += 2 + size
            if kind == _STRING:
                props[ident] = values[0].decode("utf-8", "replace")
            elif kind == _BINARY:
                props[ident] = values[0]
            # user properties (pairs) are read past and not kept
    if at != stop:
        raise ProtocolError("properties run past their length")
    return props, stop


def _reason_text(props: dict[int, object]) -> str:
    reason = props.get(_PROP_REASON_STRING)
    return f" ({reason})" if isinstance(reason, str) else ""


class Mqtt5Session:
    """One connection at a time, owned by the thread that calls :meth:`run`.

    ``on_publish`` runs on that thread for every PUBLISH, in order; it should be quick
    (backpressure: while it blocks, nothing is read and the broker holds messages back).
    :meth:`ack` may be called from any thread; an acknowledgement for a message of an
    earlier connection is not sent (the broker sends that message again).
    """

    def __init__(
        self,
        settings: SessionSettings,
        topics: list[str],
        on_publish: Callable[[Publish, int], None],
        *,
        on_connected: Callable[[bool], None] | None = None,
        on_disconnected: Callable[[BaseException | None], None] | None = None,
        reconnect_min_s: float = 1.0,
        reconnect_max_s: float = 60.0,
    ) -> None:
        self.settings = settings
        self.topics = topics
        self._on_publish = on_publish
        self._on_connected = on_connected
        self._on_disconnected = on_disconnected
        self._reconnect_min_s = reconnect_min_s
        self._reconnect_max_s = reconnect_max_s
        self._lock = threading.Lock()
        self._acks: list[int] = []
        self._generation = 0  # one per connection
        self._stopping = threading.Event()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self.stale_acks = 0

    def ack(self, generation: int, packet_id: int) -> None:
        with self._lock:
            if generation != self._generation:
                self.stale_acks += 1
                return
            first = not self._acks
            self._acks.append(packet_id)
        if first:
            self._wake()

    def stop(self) -> None:
        self._stopping.set()
        self._wake()

    def close(self) -> None:
        self._wake_r.close()
        self._wake_w.close()

    def _wake(self) -> None:
        # A full socketpair means a wake-up is already pending; a closed one, that we stopped.
        with contextlib.suppress(OSError):
            self._wake_w.send(b"\0")

    # -- the connection loop ------------------------------------------------------------

    def run(self) -> None:
        """Connect, serve, reconnect with backoff, until :meth:`stop`."""
        delay = self._reconnect_min_s
        while not self._stopping.is_set():
            error: BaseException | None = None
            served = False
            connected_at = 0.0
            try:
                sock, buffer = self._connect()
            except (OSError, ConnectionError, TimeoutError) as exc:
                log.warning("cannot connect to the broker at %s:%d: %s",
                            self.settings.host, self.settings.port, exc)
            else:
                served = True
                connected_at = time.monotonic()
                try:
                    self._serve(sock, buffer)
                except (OSError, ConnectionError, TimeoutError) as exc:
                    error = exc
                finally:
                    with self._lock:
                        self._generation += 1
                        self._acks.clear()
                    sock.close()
                    if self._on_disconnected is not None:
                        self._on_disconnected(error)
            if isinstance(error, SessionTakenOverError):
                # Taking the session straight back would make two clients with one id
                # knock each other off for ever, each holding the session a moment.
                log.error("another client connected to the broker as %r and took this "
                          "session over; each client needs its own id. Retrying in %.0f s",
                          self.settings.client_id, self._reconnect_max_s)
                delay = self._reconnect_max_s
            elif served and time.monotonic() - connected_at >= _STABLE_S:
                # Only a connection that lasted starts the backoff over: a broker that
                # closes every connection at once (as Mosquitto 2.0 does to a session
                # taken over, without saying so) is retried less and less often.
                delay = self._reconnect_min_s
            if self._stopping.wait(delay):
                break
            delay = min(self._reconnect_max_s, delay * 2)

    def _connect(self) -> tuple[ssl.SSLSocket, bytearray]:
        """A connected, subscribed socket, and what was read past the SUBACK."""
        s = self.settings
        raw = socket.create_connection((s.host, s.port), timeout=s.connect_timeout_s)
        try:
            raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock = s.context.wrap_socket(raw, server_hostname=s.server_hostname or s.host)
        except BaseException:
            raw.close()
            raise
        try:
            sock.sendall(self._connect_packet())
            buffer = bytearray()
            first, body = self._read_packet_blocking(sock, buffer)
            if first >> 4 != _CONNACK or len(body) < 2:
                raise ProtocolError(f"expected CONNACK, got packet type {first >> 4}")
            session_present, code = bool(body[0] & 1), body[1]
            props, _ = _properties(body, 2, len(body)) if len(body) > 2 else ({}, 2)
            if code >= 0x80:
                raise RefusedError(f"the broker refused the connection: reason 0x{code:02x}"
                                   f"{_reason_text(props)}")
            sock.sendall(self._subscribe_packet())
            first, body = self._read_packet_blocking(sock, buffer)
            while first >> 4 == _PUBLISH:  # a persistent session may start sending at once
                self._dispatch(first, body, self._generation)
                first, body = self._read_packet_blocking(sock, buffer)
            if first >> 4 != _SUBACK:
                raise ProtocolError(f"expected SUBACK, got packet type {first >> 4}")
            props, at = _properties(body, 2, len(body))
            refused = [c for c in body[at:] if c >= 0x80]
            if refused or len(body) - at != len(self.topics):
                raise RefusedError(f"the broker refused the subscription: reason(s) "
                                   f"{', '.join(f'0x{c:02x}' for c in refused) or 'missing'}"
                                   f"{_reason_text(props)}")
        except BaseException:
            sock.close()
            raise
        if self._on_connected is not None:
            self._on_connected(session_present)
        return sock, buffer

    def _connect_packet(self) -> bytes:
        s = self.settings
        props = (bytes([_PROP_SESSION_EXPIRY]) + struct.pack("!I", s.session_expiry_s)
                 + bytes([_PROP_RECEIVE_MAXIMUM])
                 + struct.pack("!H", max(1, min(s.receive_maximum, 65535)))
                 + bytes([_PROP_MAXIMUM_PACKET_SIZE]) + struct.pack("!I", s.maximum_packet_size))
        # Protocol level 5; flags: no clean start (the broker keeps what was not acked).
        head = utf8_field("MQTT") + bytes([5, 0x00]) + struct.pack("!H", s.keepalive_s)
        return packet(_CONNECT << 4,
                      head + encode_varint(len(props)) + props + utf8_field(s.client_id))

    def _subscribe_packet(self) -> bytes:
        # Packet id 1; options 0x01: QoS 1, local messages delivered, retain as published.
        filters = b"".join(utf8_field(topic) + b"\x01" for topic in self.topics)
        return packet(_SUBSCRIBE << 4 | 0x2, struct.pack("!H", 1) + b"\x00" + filters)

    def _read_packet_blocking(self, sock: ssl.SSLSocket, buffer: bytearray) -> tuple[int, bytes]:
        """(first byte, body) of the next packet, during the handshake (blocking socket)."""
        while True:
            parsed = self._split(buffer)
            if parsed is not None:
                return parsed
            data = sock.recv(65536)
            if not data:
                raise ConnectionResetError("the broker closed the connection")
            buffer += data

    def _split(self, buffer: bytearray) -> tuple[int, bytes] | None:
        """Take one whole packet off the front of ``buffer``, if there is one."""
        found = _varint_at(buffer, 1, len(buffer))
        if found is None:
            return None
        length, at = found
        if length > self.settings.maximum_packet_size:
            raise ProtocolError(f"a packet of {length} bytes is over the maximum")
        if len(buffer) < at + length:
            return None
        first, body = buffer[0], bytes(buffer[at:at + length])
        del buffer[:at + length]
        return first, body

    def _serve(self, sock: ssl.SSLSocket, buffer: bytearray) -> None:
        """Until stopped or the connection fails; ``buffer`` holds bytes already read."""
        s = self.settings
        generation = self._generation
        sock.setblocking(False)
        selector = selectors.DefaultSelector()
        selector.register(sock, selectors.EVENT_READ)
        selector.register(self._wake_r, selectors.EVENT_READ)
        last_sent = last_heard = time.monotonic()
        ping_every = s.keepalive_s * 0.5 if s.keepalive_s else None
        try:
            self._consume(buffer, generation)
            while not self._stopping.is_set():
                timeout = None if ping_every is None else max(
                    0.0, last_sent + ping_every - time.monotonic())
                if sock.pending():  # decrypted bytes the kernel's socket no longer shows
                    timeout = 0.0
                events = selector.select(timeout)
                now = time.monotonic()
                if any(key.fileobj is self._wake_r for key, _ in events):
                    self._drain_wake()
                if self._read_available(sock, buffer):
                    last_heard = now
                    self._consume(buffer, generation)
                acks = self._take_acks()
                if acks:
                    self._send(sock, acks)
                    last_sent = now
                if ping_every is not None and now - last_sent >= ping_every:
                    self._send(sock, b"\xc0\x00")
                    last_sent = now
                if s.keepalive_s and now - last_heard > s.keepalive_s * 1.5:
                    raise TimeoutError("the broker stopped answering (keep-alive)")
            self._send(sock, self._take_acks() + b"\xe0\x00")  # DISCONNECT, normal; session kept
        finally:
            selector.close()

    def _drain_wake(self) -> None:
        try:
            while self._wake_r.recv(4096):
                pass
        except BlockingIOError:
            pass

    def _take_acks(self) -> bytes:
        """The PUBACKs the writer released since the last call, as one write."""
        with self._lock:
            acks, self._acks = self._acks, []
        return b"".join(b"\x40\x02" + pid.to_bytes(2, "big") for pid in acks)

    def _read_available(self, sock: ssl.SSLSocket, buffer: bytearray) -> bool:
        got = False
        # Bounded: a broker that never pauses must not grow the buffer without end. The
        # rest waits in the kernel or in the TLS layer (``pending``: see ``_serve``).
        while len(buffer) < self.settings.maximum_packet_size + _READ_AHEAD:
            try:
                data = sock.recv(262144)
            except (ssl.SSLWantReadError, BlockingIOError):
                return got
            except ssl.SSLWantWriteError:
                return got
            if not data:
                raise ConnectionResetError("the broker closed the connection")
            buffer += data
            got = True
        return got

    def _send(self, sock: ssl.SSLSocket, data: bytes) -> None:
        view = memoryview(data)
        deadline = time.monotonic() + max(5.0, float(self.settings.keepalive_s))
        while view:
            try:
                sent = sock.send(view)
                view = view[sent:]
                continue
            except (ssl.SSLWantWriteError, ssl.SSLWantReadError, BlockingIOError):
                pass
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("the broker does not take what is sent to it")
            selectors_ = selectors.DefaultSelector()
            try:
                selectors_.register(sock, selectors.EVENT_WRITE)
                selectors_.select(min(left, 0.5))
            finally:
                selectors_.close()

    def _consume(self, buffer: bytearray, generation: int) -> None:
        """Handle every whole packet in ``buffer`` and drop it from there."""
        at, end = 0, len(buffer)
        on_publish = self._on_publish
        try:
            while end - at >= 2:
                first = buffer[at]
                found = _varint_at(buffer, at + 1, end)
                if found is None:
                    return
                length, i = found
                if length > self.settings.maximum_packet_size:
                    raise ProtocolError(f"a packet of {length} bytes is over the maximum")
                stop = i + length
                if stop > end:
                    return
                if first >> 4 == _PUBLISH:
                    on_publish(self._publish(buffer, first, i, stop), generation)
                else:
                    self._dispatch(first, bytes(buffer[i:stop]), generation)
                at = stop
        finally:
            del buffer[:at]

    def _publish(self, data: bytearray, first: int, at: int, stop: int) -> Publish:
        try:
            return self._parse_publish(data, first, at, stop)
        except (IndexError, ValueError) as exc:
            raise ProtocolError(f"malformed PUBLISH: {exc}") from None

    def _parse_publish(self, data: bytearray, first: int, at: int, stop: int) -> Publish:
        qos = (first >> 1) & 0x3
        if qos > 1:
            raise ProtocolError("QoS 2 delivered on a QoS 1 subscription")
        # The buffer may hold the next packets too: every field is checked against ``stop``.
        if at + 2 > stop:
            raise ProtocolError("PUBLISH without a topic")
        size = data[at] << 8 | data[at + 1]
        if at + 2 + size + (2 if qos else 0) > stop:
            raise ProtocolError("PUBLISH topic runs past the packet")
        topic = data[at + 2:at + 2 + size].decode("utf-8", "replace")
        at += 2 + size
        packet_id = 0
        if qos:
            packet_id = data[at] << 8 | data[at + 1]
            at += 2
        content_type: str | None = None
        if at >= stop:
            raise ProtocolError("PUBLISH without its properties")
        if data[at] == 0:  # no properties: the common case
            at += 1
        else:
            props, at = _properties(data, at, stop)
            value = props.get(_PROP_CONTENT_TYPE)
            content_type = value if isinstance(value, str) else None
        return Publish(topic, bytes(data[at:stop]), qos, packet_id, content_type)

    def _dispatch(self, first: int, body: bytes, generation: int) -> None:
        kind = first >> 4
        if kind == _PUBLISH:
            data = bytearray(body)
            self._on_publish(self._publish(data, first, 0, len(data)), generation)
        elif kind == _DISCONNECT:
            code = body[0] if body else 0
            props, _ = _properties(body, 1, len(body)) if len(body) > 1 else ({}, 1)
            error = SessionTakenOverError if code == _SESSION_TAKEN_OVER else ConnectionResetError
            raise error(f"the broker disconnected: reason 0x{code:02x}{_reason_text(props)}")
        elif kind in (_PINGRESP, _SUBACK, _PUBACK):
            return
        else:
            raise ProtocolError(f"unexpected packet type {kind}")
