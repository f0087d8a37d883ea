"""TLS over a plain asyncio transport, with ssl.MemoryBIO: small enough for 10,000 devices.

asyncio's own TLS (``start_tls``/``open_connection(ssl=...)``) gives every connection a
256 KiB read buffer that is touched, about 310 KB of RSS per connection here; this
protocol keeps OpenSSL's own buffers only (about 40 KB). Measured by
``benchmarks/bench_sim.py``.
"""

from __future__ import annotations

import asyncio
import ssl


class TlsClientProtocol(asyncio.Protocol):
    """Subclasses implement :meth:`plaintext_received` and call :meth:`send`."""

    def __init__(self, context: ssl.SSLContext, server_hostname: str) -> None:
        loop = asyncio.get_running_loop()
        self._incoming = ssl.MemoryBIO()
        self._outgoing = ssl.MemoryBIO()
        self._ssl = context.wrap_bio(self._incoming, self._outgoing,
                                     server_hostname=server_hostname)
        self._transport: asyncio.Transport | None = None
        self.handshake: asyncio.Future[None] = loop.create_future()
        self.closed: asyncio.Future[None] = loop.create_future()

    # -- asyncio.Protocol ------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        self._step_handshake()

    def data_received(self, data: bytes) -> None:
        self._incoming.write(data)
        if not self.handshake.done():
            self._step_handshake()
            if not self.handshake.done():
                return
        chunks = []
        try:
            while True:
                chunk = self._ssl.read(65536)
                if not chunk:  # close_notify
                    self.close()
                    break
                chunks.append(chunk)
        except ssl.SSLWantReadError:
            pass
        except ssl.SSLError as exc:
            self._fail(exc)
            return
        self._flush()
        if chunks:
            self.plaintext_received(b"".join(chunks))

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None
        if not self.handshake.done():
            self.handshake.set_exception(exc or ConnectionResetError("closed during handshake"))
        if not self.closed.done():
            self.closed.set_result(None)
        self.on_closed()

    # -- for subclasses --------------------------------------------------------------------

    def plaintext_received(self, data: bytes) -> None:
        raise NotImplementedError

    def on_closed(self) -> None:
        """Called once when the connection is gone."""

    @property
    def is_open(self) -> bool:
        return self._transport is not None and self.handshake.done() and not self.closed.done()

    def send(self, data: bytes) -> None:
        if self._transport is None:
            raise ConnectionResetError("not connected")
        try:
            self._ssl.write(data)
        except ssl.SSLError as exc:
            self._fail(exc)
            raise ConnectionResetError(str(exc)) from exc
        self._flush()

    def close(self) -> None:
        transport = self._transport
        if transport is not None:
            transport.close()

    # -- internals -------------------------------------------------------------------------

    def _flush(self) -> None:
        data = self._outgoing.read()
        if data and self._transport is not None:
            self._transport.write(data)

    def _step_handshake(self) -> None:
        try:
            self._ssl.do_handshake()
        except ssl.SSLWantReadError:
            self._flush()
            return
        except ssl.SSLError as exc:
            self._flush()
            self._fail(exc)
            return
        self._flush()
        if not self.handshake.done():
            self.handshake.set_result(None)

    def _fail(self, exc: Exception) -> None:
        if not self.handshake.done():
            self.handshake.set_exception(exc)
        if self._transport is not None:
            self._transport.abort()
