"""A minimal keep-alive HTTP/1.1 client over mutual TLS, for the simulator's devices.

Requests go one at a time per device; a connection the server closed (keep-alive
timeout) is reopened on the next request. Responses need a Content-Length (what
fleetguard's endpoint sends); chunked bodies are refused.
"""

from __future__ import annotations

import asyncio
import ssl

from fleetguard.sim._tls import TlsClientProtocol


class _Connection(TlsClientProtocol):
    def __init__(self, context: ssl.SSLContext, server_hostname: str) -> None:
        super().__init__(context, server_hostname)
        self._buffer = bytearray()
        self._response: asyncio.Future[tuple[int, bytes]] | None = None

    def request(self, data: bytes) -> asyncio.Future[tuple[int, bytes]]:
        self._buffer.clear()
        self._response = asyncio.get_running_loop().create_future()
        self.send(data)
        return self._response

    def plaintext_received(self, data: bytes) -> None:
        self._buffer += data
        response = self._response
        if response is None or response.done():
            return
        head_end = self._buffer.find(b"\r\n\r\n")
        if head_end < 0:
            return
        head = bytes(self._buffer[:head_end]).decode("latin-1").split("\r\n")
        try:
            status = int(head[0].split(" ", 2)[1])
        except (IndexError, ValueError):
            response.set_exception(ConnectionError("not an HTTP response"))
            self.close()
            return
        length = 0
        for line in head[1:]:
            name, _, value = line.partition(":")
            if name.strip().lower() == "content-length":
                length = int(value.strip())
            elif name.strip().lower() == "transfer-encoding":
                response.set_exception(ConnectionError("chunked responses are not supported"))
                self.close()
                return
        if len(self._buffer) < head_end + 4 + length:
            return
        body = bytes(self._buffer[head_end + 4:head_end + 4 + length])
        self._buffer.clear()
        response.set_result((status, body))

    def on_closed(self) -> None:
        if self._response is not None and not self._response.done():
            self._response.set_exception(ConnectionResetError("connection closed"))


class MiniHttpsClient:
    def __init__(self, host: str, port: int, context: ssl.SSLContext) -> None:
        self._host, self._port, self._context = host, port, context
        self._conn: _Connection | None = None

    @property
    def connected(self) -> bool:
        return self._conn is not None and self._conn.is_open

    async def open(self, timeout_s: float = 30.0) -> None:
        if self.connected:
            return
        loop = asyncio.get_running_loop()
        async with asyncio.timeout(timeout_s):
            _, conn = await loop.create_connection(
                lambda: _Connection(self._context, self._host), self._host, self._port)
            await conn.handshake
        self._conn = conn

    async def request(self, method: str, path: str, body: bytes = b"",
                      content_type: str = "application/json",
                      timeout_s: float = 30.0) -> tuple[int, bytes]:
        for attempt in (1, 2):
            await self.open(timeout_s)
            conn = self._conn
            assert conn is not None
            head = (f"{method} {path} HTTP/1.1\r\nHost: {self._host}:{self._port}\r\n"
                    f"Content-Type: {content_type}\r\nContent-Length: {len(body)}\r\n"
                    "Accept: application/json\r\n\r\n").encode()
            try:
                async with asyncio.timeout(timeout_s):
                    return await conn.request(head + body)
            except ConnectionResetError:
                self._conn = None
                if attempt == 2:  # the server closed an idle connection: one retry
                    raise
        raise AssertionError("unreachable")

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
