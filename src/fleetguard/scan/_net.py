"""Network plumbing for the probes: limits, TCP streams, UDP exchanges (asyncio, no raw sockets)."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import socket
import ssl
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

from fleetguard.protocol.scan_report import PortState


class TokenBucket:
    """At most ``rate`` starts per second (0 = unlimited), smoothed, no burst."""

    def __init__(self, rate: float) -> None:
        self._interval = 1.0 / rate if rate > 0 else 0.0
        self._next = 0.0
        self._lock = asyncio.Lock()

    async def take(self) -> None:
        if not self._interval:
            return
        async with self._lock:
            now = time.monotonic()
            start = max(now, self._next)
            self._next = start + self._interval
        if start > now:
            await asyncio.sleep(start - now)


@dataclass(slots=True)
class Gate:
    """The limits one host's probes go through: global and per-host concurrency, per-host rate."""

    global_slots: asyncio.Semaphore
    host_slots: asyncio.Semaphore
    bucket: TokenBucket

    @contextlib.asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        async with self.host_slots:
            await self.bucket.take()
            async with self.global_slots:
                yield


@dataclass(slots=True)
class HostNet:
    """Everything a probe needs to talk to one host, and only to that host."""

    address: str
    name: str | None
    timeout: float
    gate: Gate
    probes_sent: list[int] = field(default_factory=lambda: [0])

    @property
    def server_name(self) -> str | None:
        return self.name

    @contextlib.asynccontextmanager
    async def tcp(
        self, port: int, *, tls: ssl.SSLContext | None = None
    ) -> AsyncIterator[tuple[asyncio.StreamReader, asyncio.StreamWriter]]:
        """A TCP (optionally TLS) stream to this host, held inside a concurrency slot."""
        async with self.gate.slot():
            self.probes_sent[0] += 1
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(
                    self.address,
                    port,
                    ssl=tls,
                    server_hostname=(self.name or "") if tls is not None else None,
                    limit=1 << 20,
                ),
                self.timeout,
            )
            try:
                yield reader, writer
            finally:
                writer.close()
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(writer.wait_closed(), 1.0)

    async def tcp_state(self, port: int) -> tuple[PortState, str]:
        """Connect scan of one port."""
        async with self.gate.slot():
            self.probes_sent[0] += 1
            family = socket.AF_INET6 if ":" in self.address else socket.AF_INET
            sock = socket.socket(family, socket.SOCK_STREAM)
            sock.setblocking(False)
            loop = asyncio.get_running_loop()
            try:
                await asyncio.wait_for(loop.sock_connect(sock, (self.address, port)), self.timeout)
            except ConnectionRefusedError:
                return PortState.CLOSED, ""
            except TimeoutError:
                return PortState.FILTERED, f"no answer within {self.timeout:g}s"
            except OSError as exc:
                if exc.errno in (errno.EHOSTUNREACH, errno.ENETUNREACH, errno.EACCES):
                    return PortState.FILTERED, exc.strerror or "unreachable"
                return PortState.FILTERED, f"error: {exc.strerror or exc}"
            finally:
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00" * 2)
                sock.close()
            return PortState.OPEN, ""

    async def udp_exchange(
        self,
        port: int,
        payload: bytes,
        *,
        accept: Callable[[bytes], bool] | None = None,
        collect: float = 0.0,
    ) -> tuple[PortState, list[bytes]]:
        """Send one datagram (resent once), return replies from this host and port.

        ``collect`` > 0 keeps listening that long after the first accepted reply.
        """
        async with self._udp(port, accept, sends=1) as (transport, proto):
            if transport is None:
                return PortState.FILTERED, []
            loop = asyncio.get_running_loop()
            transport.sendto(payload)
            deadline = loop.time() + self.timeout
            resent = False
            while loop.time() < deadline:
                if proto.refused:
                    return PortState.CLOSED, []
                if proto.replies:
                    if collect > 0:
                        await asyncio.sleep(collect)
                    return PortState.OPEN, list(proto.replies)
                if not resent and loop.time() > deadline - self.timeout / 2:
                    transport.sendto(payload)
                    resent = True
                await proto.wait(0.05)
            return proto.verdict()

    async def udp_burst(
        self,
        port: int,
        payloads: list[bytes],
        *,
        accept: Callable[[bytes], bool],
        spacing: float = 0.002,
        quiet: float = 0.3,
    ) -> tuple[PortState, list[bytes]]:
        """Send several datagrams from one socket; collect replies until quiet or timeout."""
        async with self._udp(port, accept, sends=len(payloads)) as (transport, proto):
            if transport is None:
                return PortState.FILTERED, []
            loop = asyncio.get_running_loop()
            for p in payloads:
                transport.sendto(p)
                await asyncio.sleep(spacing)
            deadline = loop.time() + self.timeout
            last_count, last_change = 0, loop.time()
            while loop.time() < deadline:
                if proto.refused and not proto.replies:
                    return PortState.CLOSED, []
                if proto.replies and len(proto.replies) != last_count:
                    last_count, last_change = len(proto.replies), loop.time()
                if proto.replies and loop.time() - last_change > quiet:
                    break
                await proto.wait(0.05)
            return proto.verdict()

    @contextlib.asynccontextmanager
    async def _udp(
        self, port: int, accept: Callable[[bytes], bool] | None, *, sends: int
    ) -> AsyncIterator[tuple[asyncio.DatagramTransport | None, _UdpCollector]]:
        """A UDP socket connected to ``port`` under the rate gate; no transport if it failed."""
        async with self.gate.slot():
            self.probes_sent[0] += sends
            proto = _UdpCollector(accept)
            try:
                transport, _ = await asyncio.get_running_loop().create_datagram_endpoint(
                    lambda: proto, remote_addr=(self.address, port)
                )
            except OSError:
                yield None, proto
                return
            try:
                yield transport, proto
            finally:
                transport.close()


class _UdpCollector(asyncio.DatagramProtocol):
    def __init__(self, accept: Callable[[bytes], bool] | None) -> None:
        self.accept = accept
        self.replies: list[bytes] = []
        self.refused = False
        self.event = asyncio.Event()

    async def wait(self, seconds: float) -> None:
        """Until a reply or refusal comes, or ``seconds`` pass."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.event.wait(), seconds)
        self.event.clear()

    def verdict(self) -> tuple[PortState, list[bytes]]:
        """What the port is, from what came back by the deadline."""
        if self.replies:
            return PortState.OPEN, list(self.replies)
        return (PortState.CLOSED if self.refused else PortState.OPEN_FILTERED), []

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        if self.accept is None or self.accept(data):
            self.replies.append(data)
            self.event.set()

    def error_received(self, exc: Exception) -> None:
        if isinstance(exc, ConnectionRefusedError):
            self.refused = True
            self.event.set()


async def read_some(reader: asyncio.StreamReader, timeout: float, limit: int = 65536) -> bytes:
    """Whatever arrives within ``timeout`` (the first chunk), or b'' on silence or EOF."""
    try:
        return await asyncio.wait_for(reader.read(limit), timeout)
    except (TimeoutError, ConnectionError, OSError):
        return b""


async def read_until(
    reader: asyncio.StreamReader,
    done: Callable[[bytes], bool],
    timeout: float,
    limit: int = 262144,
) -> bytes:
    """Accumulate until ``done(buffer)`` or EOF or the deadline; returns what came."""
    buf = bytearray()
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while len(buf) < limit:
        left = deadline - loop.time()
        if left <= 0:
            break
        try:
            chunk = await asyncio.wait_for(reader.read(4096), left)
        except (TimeoutError, ConnectionError, OSError):
            break
        if not chunk:
            break
        buf += chunk
        if done(bytes(buf)):
            break
    return bytes(buf)


def insecure_tls_context() -> ssl.SSLContext:
    """A client context that talks to anything (we inspect, not trust), TLS 1.0 and up."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with contextlib.suppress(ssl.SSLError):
        ctx.set_ciphers("ALL:@SECLEVEL=0")
    with contextlib.suppress(ValueError, ssl.SSLError):
        ctx.minimum_version = ssl.TLSVersion.MINIMUM_SUPPORTED
    return ctx


def printable(data: bytes, limit: int = 200) -> str:
    text = data.decode("latin-1")
    cleaned = "".join(ch if ch.isprintable() or ch in "\n" else " " for ch in text)
    cleaned = " ".join(cleaned.split())
    return cleaned[:limit]
