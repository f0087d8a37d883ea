"""The client deadlines of one connection: uvicorn's httptools protocol, timed."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
from typing import Any, cast

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from fleetguard.core.errors import ConfigurationError
from fleetguard.server.connections.guard import RESET_ON_CLOSE, Ticket
from fleetguard.server.connections.limits import ListenerLimits


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
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, RESET_ON_CLOSE)
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
