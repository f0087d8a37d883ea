"""Accepting through the guard: the listening sockets and the uvicorn server over them."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import socket
import ssl
import sys
from collections.abc import Callable

import uvicorn
from uvicorn.config import STARTUP_FAILURE

from fleetguard.server.connections.deadlines import GuardedHttpToolsProtocol, guarded_protocol
from fleetguard.server.connections.guard import (
    RESET_ON_CLOSE,
    ConnectionGuard,
    Ticket,
    address_key,
)

log = logging.getLogger("fleetguard.server")

_OUT_OF_RESOURCES = {errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM}


class GuardedListener:
    """Accepts on one listening socket: counts, refuses or admits before any TLS work.

    Stands in for the asyncio Server that uvicorn keeps (``close``, ``wait_closed``).
    """

    def __init__(self, sock: socket.socket, guard: ConnectionGuard, tls: ssl.SSLContext | None,
                 protocol_factory: Callable[[], GuardedHttpToolsProtocol]) -> None:
        self.sock = sock
        self.guard = guard
        self.tls = tls
        self.protocol_factory = protocol_factory
        self._loop = asyncio.get_running_loop()
        self._opening: set[asyncio.Task[None]] = set()
        self._closed = False
        sock.setblocking(False)
        self._loop.add_reader(sock.fileno(), self._accept)

    def _accept(self) -> None:
        for _ in range(128):  # then let the loop serve others
            try:
                conn, peer = self.sock.accept()
            except (BlockingIOError, InterruptedError, ConnectionAbortedError):
                return
            except OSError as exc:
                if exc.errno not in _OUT_OF_RESOURCES:
                    raise
                # Out of descriptors: stop accepting for a second, as asyncio does.
                self.guard.note(f"accept paused: {exc.strerror}")
                self._loop.remove_reader(self.sock.fileno())
                self._loop.call_later(1.0, self._resume)
                return
            ticket = self.guard.admit(address_key(peer), conn)
            if ticket is None:
                with contextlib.suppress(OSError):
                    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, RESET_ON_CLOSE)
                conn.close()  # refused before any TLS work
                continue
            conn.setblocking(False)
            if conn.family in (socket.AF_INET, socket.AF_INET6):
                with contextlib.suppress(OSError):
                    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            task = self._loop.create_task(self._open(ticket))
            self._opening.add(task)
            task.add_done_callback(self._opening.discard)

    def _resume(self) -> None:
        if not self._closed:
            self._loop.add_reader(self.sock.fileno(), self._accept)

    async def _open(self, ticket: Ticket) -> None:
        def protocol() -> GuardedHttpToolsProtocol:
            made = self.protocol_factory()
            made.fg_ticket = ticket
            ticket.protocol = made
            return made

        limits, started = self.guard.limits, self._loop.time()
        try:
            if self.tls is None:
                await self._loop.connect_accepted_socket(protocol, ticket.sock)
            else:
                await self._loop.connect_accepted_socket(
                    protocol, ticket.sock, ssl=self.tls,
                    ssl_handshake_timeout=limits.handshake_timeout_s,
                    ssl_shutdown_timeout=limits.tls_shutdown_timeout_s,
                )
        except asyncio.CancelledError:
            ticket.release()
            raise
        except Exception:  # a failed, slow or abandoned handshake; the loop closed the socket
            if ticket.admitted:  # not evicted
                slow = self._loop.time() - started >= limits.handshake_timeout_s * 0.9
                self.guard.note("TLS handshake too slow" if slow else "TLS handshake failed")
            ticket.release()

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._loop.remove_reader(self.sock.fileno())
            self.sock.close()
            for task in self._opening:
                task.cancel()

    async def wait_closed(self) -> None:
        if self._opening:
            await asyncio.wait(self._opening)


def _listening_sockets(host: str, port: int, backlog: int) -> list[socket.socket]:
    """Bind like asyncio's create_server(host, port): one socket per address of ``host``."""
    infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM,
                               flags=socket.AI_PASSIVE)
    sockets: list[socket.socket] = []
    try:
        for family, kind, proto, _, address in dict.fromkeys(infos):
            sock = socket.socket(family, kind, proto or socket.IPPROTO_TCP)
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind(address)
            sock.listen(backlog)
    except OSError:
        for sock in sockets:
            sock.close()
        raise
    return sockets


class GuardedServer(uvicorn.Server):
    """A uvicorn server whose listeners accept through a :class:`ConnectionGuard`."""

    def __init__(self, config: uvicorn.Config, *, guard: ConnectionGuard,
                 tls: ssl.SSLContext | None) -> None:
        super().__init__(config)
        self.guard = guard
        self.tls = tls

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        # uvicorn's own startup, but for how connections are accepted.
        await self.lifespan.startup()
        if self.lifespan.should_exit:
            sys.exit(STARTUP_FAILURE)
        config = self.config
        protocol_class = guarded_protocol(config.http_protocol_class)

        def create_protocol() -> GuardedHttpToolsProtocol:
            return protocol_class(
                config=config, server_state=self.server_state, app_state=self.lifespan.state,
            )

        if sockets is None:
            try:
                sockets = _listening_sockets(config.host, config.port, config.backlog)
            except OSError as exc:
                log.error("%s: %s", self.guard.name, exc)
                await self.lifespan.shutdown()
                sys.exit(STARTUP_FAILURE)
        self.servers = [
            GuardedListener(sock, self.guard, self.tls, create_protocol)  # type: ignore[misc]
            for sock in sockets
        ]
        self.started = True
