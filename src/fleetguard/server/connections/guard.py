"""One listener's count of connections: admitted, refused, or evicted to make room."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import socket
import struct
from collections import Counter
from typing import Any, Protocol

from fleetguard.server.connections.limits import ListenerLimits

log = logging.getLogger("fleetguard.server")

#: At most one summary line per listener this often, however many clients misbehave.
LOG_EVERY_S = 60.0
#: SO_LINGER on, 0 s: close() sends a reset.
RESET_ON_CLOSE = struct.pack("ii", 1, 0)


class GuardedConnection(Protocol):
    """The HTTP protocol of an admitted connection, once it exists."""

    fg_ready: bool

    def fg_close(self, *, abort: bool) -> None: ...


def address_key(peername: Any) -> str:
    """Whom a connection counts against: its IPv4 address, or its IPv6 /64.

    One IPv6 host usually holds a whole /64, so counting single addresses would not bound it.
    """
    if not isinstance(peername, tuple) or not peername:
        return "local"  # a Unix socket
    try:
        address = ipaddress.ip_address(str(peername[0]).split("%", 1)[0])
    except ValueError:
        return str(peername[0])
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return str(address)


class Ticket:
    """One accepted connection's place in its listener's count."""

    __slots__ = ("admitted", "guard", "key", "protocol", "sock")

    def __init__(self, guard: ConnectionGuard, key: str, sock: socket.socket) -> None:
        self.guard = guard
        self.key = key
        self.sock = sock
        self.protocol: GuardedConnection | None = None
        self.admitted = True

    def release(self) -> None:
        if self.admitted:
            self.admitted = False
            self.guard.release(self)

    def evict(self) -> None:
        """Make room for a newer connection: end this one now, without a goodbye."""
        self.release()
        if self.protocol is not None and self.protocol.fg_ready:
            self.protocol.fg_close(abort=True)
            return
        # Still in the TLS handshake: the loop's transport owns the socket and closes it
        # when it reads the end (a socket it closed already has no descriptor: EBADF).
        with contextlib.suppress(OSError):
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, RESET_ON_CLOSE)
            self.sock.shutdown(socket.SHUT_RDWR)


class ConnectionGuard:
    """One listener's connections: counted per address and in all.

    When full, a new connection first evicts one with no request under way (in its TLS
    handshake, or idle), which loses nothing; then one sending a request slowly; each the
    one waiting longest. The app's connections are not candidates.
    """

    def __init__(self, name: str, limits: ListenerLimits) -> None:
        self.name = name
        self.limits = limits
        self.open = 0
        self._per_address: dict[str, int] = {}
        # Insertion-ordered: the first entry has waited longest on its client.
        self._idle: dict[Ticket, None] = {}
        self._receiving: dict[Ticket, None] = {}
        self.events: Counter[str] = Counter()
        self._unlogged: Counter[str] = Counter()
        self._logged_at: float | None = None

    def admit(self, key: str, sock: socket.socket) -> Ticket | None:
        if self._per_address.get(key, 0) >= self.limits.max_per_address:
            self.note("refused: too many from one address")
            return None
        if self.open >= self.limits.max_connections:
            waiting = self._idle or self._receiving
            if not waiting:
                self.note("refused: listener full")
                return None
            self.note("evicted for a newer connection")
            next(iter(waiting)).evict()
        ticket = Ticket(self, key, sock)
        self.open += 1
        self._per_address[key] = self._per_address.get(key, 0) + 1
        self._idle[ticket] = None
        return ticket

    def release(self, ticket: Ticket) -> None:
        self.busy(ticket)
        self.open -= 1
        left = self._per_address[ticket.key] - 1
        if left:
            self._per_address[ticket.key] = left
        else:
            del self._per_address[ticket.key]

    def waiting(self, ticket: Ticket, *, mid_request: bool) -> None:
        """The connection waits on its client again: last in its line for eviction."""
        if ticket.admitted:
            self.busy(ticket)
            (self._receiving if mid_request else self._idle)[ticket] = None

    def busy(self, ticket: Ticket) -> None:
        self._idle.pop(ticket, None)
        self._receiving.pop(ticket, None)

    def note(self, event: str) -> None:
        """Count what happened; log a summary at most once a minute."""
        self.events[event] += 1
        self._unlogged[event] += 1
        now = asyncio.get_running_loop().time()
        if self._logged_at is None or now - self._logged_at >= LOG_EVERY_S:
            summary = ", ".join(f"{n} {what}" for what, n in sorted(self._unlogged.items()))
            log.warning("%s: connections closed or refused: %s (open now: %d of %d)",
                        self.name, summary, self.open, self.limits.max_connections)
            self._unlogged.clear()
            self._logged_at = now
