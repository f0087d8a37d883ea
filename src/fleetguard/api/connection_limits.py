"""Bounded connections on each listener: slow or idle clients are dropped, floods are capped.

uvicorn bounds none of this (0.54, read from its source): a new connection may stay silent,
send half its headers or trickle its body for ever, since its only timer is the keep-alive
one armed after a response; its ``limit_concurrency`` answers 503 only after the TLS
handshake and the whole header block; and the TLS handshake may take asyncio's default of
60 s. So each listener is served by a :class:`GuardedServer` with its own
:class:`ConnectionGuard`:

* the server accepts itself and counts a connection before any TLS work. Over its address's
  share it is reset at once. When the listener is full, the connection that has waited
  longest on its client (handshake, idle, headers or body) makes room; one the app is working
  for is never evicted; with none waiting, the new one is reset. The operator API and the
  device endpoint count separately, so a flood on one leaves the other alone;
* TLS is the event loop's own (``connect_accepted_socket``) with a 10 s handshake timeout;
* the HTTP protocol (:func:`guarded_protocol`, uvicorn's httptools one underneath) wants a
  request's first byte within ``idle_timeout_s`` of the connection or of the last response,
  the header block within ``header_timeout_s`` of that byte, and a body that keeps coming:
  no pause over ``body_timeout_s`` and on average ``body_min_rate`` bytes/s after the first
  ``body_timeout_s`` (Apache's mod_reqtimeout rule). Slow headers or body get a 408 with our
  JSON error before the close; an idle connection is closed silently, as HTTP/1.1 allows;
* a client that stops taking its response (a slow read: the transport's buffer stays full for
  ``send_timeout_s``) is cut.

While the app holds a request (reading slowly, or streaming a response such as the
dashboard's live updates) no other deadline runs: the app decides.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import ipaddress
import json
import logging
import resource
import socket
import ssl
import struct
import sys
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any, cast

import uvicorn
from uvicorn.config import STARTUP_FAILURE
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from fleetguard.core.errors import ConfigurationError, ValidationFailedError

log = logging.getLogger("fleetguard.server")

#: Open files the process keeps for itself beside the listeners' connections: the database
#: pool, logs, the CA, and scans run by the server (256 sockets at their default concurrency).
RESERVED_FILES = 512
#: At most one summary line per listener this often, however many clients misbehave.
LOG_EVERY_S = 60.0


@dataclass(frozen=True, slots=True)
class ListenerLimits:
    """How many connections one listener keeps, and how long a client may take."""

    max_connections: int
    max_per_address: int
    handshake_timeout_s: float = 10.0
    idle_timeout_s: float = 10.0
    header_timeout_s: float = 10.0
    body_timeout_s: float = 10.0
    body_min_rate: int = 500
    max_header_bytes: int = 64 * 1024
    #: A client that stops reading its response: no progress in this long and it is cut.
    send_timeout_s: float = 30.0
    #: A closed TLS connection waits this long for the client's close_notify (asyncio: 30 s).
    tls_shutdown_timeout_s: float = 5.0

    def __post_init__(self) -> None:
        for name in ("max_connections", "max_per_address", "body_min_rate", "max_header_bytes"):
            if getattr(self, name) < 1:
                raise ValidationFailedError(f"{name} must be at least 1", field=name)
        for name in ("handshake_timeout_s", "idle_timeout_s", "header_timeout_s",
                     "body_timeout_s", "send_timeout_s", "tls_shutdown_timeout_s"):
            if not getattr(self, name) > 0:
                raise ValidationFailedError(f"{name} must be above 0", field=name)
        if self.max_per_address > self.max_connections:
            raise ValidationFailedError(
                f"{self.max_per_address} connections per address is more than the "
                f"{self.max_connections} the listener keeps in all", field="max_per_address",
            )


#: Operators are few: a browser opens about six connections, so 64 per address is ten
#: people behind one NAT; 1,024 in all costs at most ~32 MB of idle TLS connections.
OPERATOR_API = ListenerLimits(max_connections=1024, max_per_address=64)
#: A site or a carrier NAT may put thousands of devices behind one address. 10,000 devices
#: reporting every 300 s, each connection up to ~10 s open, is ~330 at once: 512 per address
#: leaves room for a reconnect burst. 8,192 in all (~250 MB of idle TLS connections at
#: worst) is 25 times what 100,000 such devices keep open.
DEVICE_ENDPOINT = ListenerLimits(max_connections=8192, max_per_address=512)


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


def fit_to_open_files(
    limits: Sequence[ListenerLimits], reserved: int = RESERVED_FILES,
) -> list[ListenerLimits]:
    """Raise this process's open-file limit to what the listeners need, or scale them to it.

    Without this a flood on one listener could use up the process's descriptors and keep
    the other from accepting at all: the per-listener caps only hold if they fit together.
    """
    wanted = sum(limit.max_connections for limit in limits) + reserved
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard >= wanted:
        if soft != resource.RLIM_INFINITY and soft < wanted:
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
        return list(limits)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    budget = max(hard - reserved, hard // 2)
    total = sum(limit.max_connections for limit in limits)
    fitted = []
    for limit in limits:
        share = max(1, limit.max_connections * budget // total)
        fitted.append(replace(limit, max_connections=share,
                              max_per_address=min(limit.max_per_address, share)))
    log.warning(
        "the open-file limit (%d) is below the %d the listeners need: they keep at most %s "
        "connections; raise it (ulimit -n, LimitNOFILE=) to keep more", hard, wanted,
        " and ".join(str(f.max_connections) for f in fitted),
    )
    return fitted


class Ticket:
    """One accepted connection's place in its listener's count."""

    __slots__ = ("admitted", "guard", "key", "protocol", "sock")

    def __init__(self, guard: ConnectionGuard, key: str, sock: socket.socket) -> None:
        self.guard = guard
        self.key = key
        self.sock = sock
        self.protocol: GuardedHttpToolsProtocol | None = None
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
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _RESET)
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


def _error_response(status: str, code: str, message: str) -> bytes:
    """An HTTP/1.1 answer with our JSON error body, written straight to the transport."""
    body = json.dumps({"error": {"code": code, "message": message}}).encode()
    return (f"HTTP/1.1 {status}\r\ncontent-type: application/json\r\n"
            f"content-length: {len(body)}\r\nconnection: close\r\n\r\n").encode() + body


# Where a connection's receiving side is; every state but _APP waits on the client.
_IDLE, _HEADERS, _BODY, _APP, _CLOSED = range(5)


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with client deadlines; its ticket is set on creation."""

    fg_ticket: Ticket

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fg_ready = False  # connection_made has run (after TLS)
        self._fg_state = _IDLE
        self._fg_timer: asyncio.TimerHandle | None = None
        self._fg_timer_at = 0.0
        self._fg_since = 0.0  # when the current state began
        self._fg_last = 0.0  # the last body bytes
        self._fg_bytes = 0  # header or body bytes in the current state
        self._fg_stalled_at: float | None = None  # when writing last had to wait

    @property
    def _fg_limits(self) -> ListenerLimits:
        return self.fg_ticket.guard.limits

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.fg_ready = True
        if not self.fg_ticket.admitted:  # evicted during the handshake
            self.fg_close(abort=True)
            return
        self._fg_enter(_IDLE)

    def connection_lost(self, exc: Exception | None) -> None:
        self._fg_state = _CLOSED
        self.fg_ticket.release()
        self.fg_ticket.protocol = None  # no cycle left for the collector
        if self._fg_timer is not None:
            self._fg_timer.cancel()
            self._fg_timer = None
        super().connection_lost(exc)

    # What the client sent --------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        if self._fg_state == _CLOSED:
            return  # dropped: what still arrives is not read
        super().data_received(data)
        if self._fg_state == _HEADERS:
            self._fg_bytes += len(data)
            limit = self._fg_limits.max_header_bytes
            if self._fg_bytes > limit:
                self.fg_ticket.guard.note("header block too large")
                self._fg_answer_and_close(
                    "431 Request Header Fields Too Large", "headers_too_large",
                    f"the request line and headers exceed {limit} bytes",
                )

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._fg_enter(_HEADERS)

    def on_headers_complete(self) -> None:
        super().on_headers_complete()
        if self._fg_state != _CLOSED:
            self._fg_enter(_BODY)
            self._fg_last = self._fg_since

    def on_body(self, body: bytes) -> None:
        super().on_body(body)
        self._fg_bytes += len(body)
        self._fg_last = self.loop.time()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        if self._fg_state == _CLOSED:
            return
        if self.cycle is not None and self.cycle.response_complete:
            # The app answered before reading it all: the connection is idle again.
            self._fg_enter(_IDLE)
        else:
            self._fg_enter(_APP)

    def on_response_complete(self) -> None:
        super().on_response_complete()
        # Only when nothing else was received meanwhile: a pipelined request keeps its state.
        if (self._fg_state == _APP and (self.cycle is None or self.cycle.response_complete)
                and not self.transport.is_closing()):
            self._fg_enter(_IDLE)

    def pause_writing(self) -> None:
        # The client is not taking our response (the transport's buffer is full): whatever
        # the state, it has send_timeout_s to take some, or the connection is cut.
        super().pause_writing()
        if self._fg_state != _CLOSED:
            self._fg_stalled_at = self.loop.time()
            self._fg_arm(self._fg_stalled_at + self._fg_limits.send_timeout_s)

    def resume_writing(self) -> None:
        super().resume_writing()
        self._fg_stalled_at = None

    # Deadlines ----------------------------------------------------------------------------

    def _fg_enter(self, state: int) -> None:
        self._fg_state = state
        self._fg_since = self.loop.time()
        self._fg_bytes = 0
        if state == _APP:
            self.fg_ticket.guard.busy(self.fg_ticket)
            return
        self.fg_ticket.guard.waiting(self.fg_ticket, mid_request=state != _IDLE)
        deadline = self._fg_deadline()
        if deadline is not None:
            self._fg_arm(deadline)

    def _fg_deadline(self) -> float | None:
        limits, state = self._fg_limits, self._fg_state
        if state == _IDLE:
            return self._fg_since + limits.idle_timeout_s
        if state == _HEADERS:
            return self._fg_since + limits.header_timeout_s
        if state == _BODY:
            return min(self._fg_last + limits.body_timeout_s,
                       self._fg_since + limits.body_timeout_s
                       + self._fg_bytes / limits.body_min_rate)
        return None

    def _fg_arm(self, deadline: float) -> None:
        # One timer per connection, moved only when a deadline comes earlier; a timer that
        # fires early checks again and re-arms. Most requests create no timer at all.
        if self._fg_timer is not None:
            if self._fg_timer_at <= deadline:
                return
            self._fg_timer.cancel()
        self._fg_timer_at = deadline
        self._fg_timer = self.loop.call_at(deadline, self._fg_on_timer)

    def _fg_on_timer(self) -> None:
        self._fg_timer = None
        now = self.loop.time()
        stalled_until = (None if self._fg_stalled_at is None
                         else self._fg_stalled_at + self._fg_limits.send_timeout_s)
        if stalled_until is not None and now >= stalled_until - 0.001:
            self.fg_ticket.guard.note("response not read")
            self.fg_close(abort=True)  # its buffer is full: nothing more can be sent
            return
        deadline = self._fg_deadline()
        if deadline is not None:
            if self._fg_state == _BODY and self.flow.read_paused:
                # The app has not read what came yet (or a pipelined request waits): the
                # client is not the slow one. Measure afresh once reading resumes.
                self._fg_since = self._fg_last = now
                self._fg_bytes = 0
                deadline = now + self._fg_limits.body_timeout_s
            elif now >= deadline - 0.001:
                self._fg_timed_out()
                return
            self._fg_arm(deadline)
        if stalled_until is not None:
            self._fg_arm(stalled_until)

    def _fg_timed_out(self) -> None:
        limits, guard = self._fg_limits, self.fg_ticket.guard
        if self._fg_state == _IDLE:
            guard.note("idle")
            self.fg_close(abort=False)
        elif self._fg_state == _HEADERS:
            guard.note("headers too slow")
            self._fg_answer_and_close(
                "408 Request Timeout", "request_timeout",
                f"the request's headers did not arrive within {limits.header_timeout_s:g} s",
            )
        else:
            guard.note("body too slow")
            self._fg_answer_and_close(
                "408 Request Timeout", "request_timeout",
                f"the request body came too slowly (a pause over {limits.body_timeout_s:g} s, "
                f"or under {limits.body_min_rate} bytes/s on average)",
            )

    def _fg_answer_and_close(self, status: str, code: str, message: str) -> None:
        # Only when no response is on its way, so ours cannot land inside another.
        cycle = self.cycle
        if not self.transport.is_closing() and (
                cycle is None or cycle.response_complete
                or (self._fg_state == _BODY and not cycle.response_started and not self.pipeline)):
            self.transport.write(_error_response(status, code, message))
        self.fg_close(abort=False)

    def fg_close(self, *, abort: bool) -> None:
        self._fg_state = _CLOSED
        cycle = self.cycle
        if cycle is not None and not cycle.response_complete:
            # The app's receive() returns a disconnect now and its sends go nowhere.
            cycle.disconnected = True
            cycle.message_event.set()
        if abort:
            # A reset: what we had queued for the client is dropped with the connection,
            # rather than left to the kernel to deliver to a client that may never read.
            sock = self.transport.get_extra_info("socket")
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _RESET)
            self.transport.abort()
        else:
            self.transport.close()


_GUARDED: dict[type[asyncio.Protocol], type[GuardedHttpToolsProtocol]] = {}


def guarded_protocol(base: type[asyncio.Protocol]) -> type[GuardedHttpToolsProtocol]:
    """``base`` (uvicorn's httptools protocol or a subclass) with the client deadlines."""
    if not issubclass(base, HttpToolsProtocol):
        raise ConfigurationError(
            f"{base.__name__} is not uvicorn's httptools protocol; the server needs httptools "
            "(pip install 'fleetguard[server]')"
        )
    if base is HttpToolsProtocol:
        return GuardedHttpToolsProtocol
    if base not in _GUARDED:
        _GUARDED[base] = cast(type[GuardedHttpToolsProtocol], type(
            f"Guarded{base.__name__}", (GuardedHttpToolsProtocol, base), {"__module__": __name__}))
    return _GUARDED[base]


_OUT_OF_RESOURCES = {errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM}
_RESET = struct.pack("ii", 1, 0)  # SO_LINGER on, 0 s: close() sends a reset


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
                    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _RESET)
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
