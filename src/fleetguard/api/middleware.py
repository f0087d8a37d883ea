"""ASGI middleware: body size limit, JSON nesting limit, errors of streamed responses,
security headers, request log and metrics."""

from __future__ import annotations

import json
import logging
import re
import time
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from fleetguard.api.errors import fleet_error_response
from fleetguard.api.metrics import ApiMetrics
from fleetguard.core.errors import FleetError

log = logging.getLogger("fleetguard.access")

MAX_BODY_BYTES = 1024 * 1024
#: Deeper JSON is refused before anything parses it: no request of the API nests beyond a
#: handful of levels, and a decoder or a later json.dumps would run out of stack on
#: thousands (a 500 where bad input must be a 4xx).
MAX_JSON_DEPTH = 64


async def _send_json(send: Send, status: int, body: dict[str, Any]) -> None:
    payload = json.dumps(body).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(payload)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": payload})


class _BodyTooLarge(Exception):
    pass


async def _read_body(receive: Receive, limit: int | None = None) -> bytes | None:
    """The whole request body, read before the app sees any of it; None when the client
    left first (the app then hears that itself). Over ``limit`` bytes: _BodyTooLarge."""
    body = bytearray()
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return None
        body += message.get("body", b"")
        if limit is not None and len(body) > limit:
            raise _BodyTooLarge
        if not message.get("more_body", False):
            return bytes(body)


def _replaying(body: bytes, receive: Receive) -> Receive:
    """A receive channel that hands the app the body already read, then the real one."""
    replayed = False

    async def replay() -> Message:
        nonlocal replayed
        if not replayed:
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


class BodyLimitMiddleware:
    """Refuse bodies over the limit with 413, by header and while streaming."""

    def __init__(self, app: ASGIApp, max_bytes: int = MAX_BODY_BYTES,
                 larger: dict[str, int] | None = None) -> None:
        """``larger``: exact paths allowed a bigger body (the route checks it again)."""
        self.app = app
        self.max_bytes = max_bytes
        self.larger = dict(larger or {})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.larger.get(scope.get("path", ""), self.max_bytes)
        too_large = {"error": {"code": "payload_too_large",
                               "message": f"request body over {limit} bytes"}}
        declared = _declared_length(scope)
        if declared is not None:
            if declared < 0 or declared > limit:
                await _send_json(send, 413 if declared > 0 else 400, too_large)
                return
            await self.app(scope, receive, send)  # bounded above; the server enforces the length
            return
        # Chunked upload: read it (at most the limit) before the app sees any of it.
        try:
            body = await _read_body(receive, limit)
        except _BodyTooLarge:
            await _send_json(send, 413, too_large)
            return
        await self.app(scope, receive if body is None else _replaying(body, receive), send)


def _declared_length(scope: Scope) -> int | None:
    """The largest Content-Length the request declares; -1 when one is not a number or
    is negative; None when it declares none."""
    values = [value for name, value in scope.get("headers", []) if name == b"content-length"]
    if not values:
        return None
    try:
        lengths = [int(value) for value in values]
    except ValueError:
        return -1
    return -1 if min(lengths) < 0 else max(lengths)


# Strings (skipped whole, escapes included) and brackets, the only tokens depth depends on.
_JSON_TOKENS = re.compile(rb'"(?:[^"\\]+|\\.)*"|[\[\]{}]', re.DOTALL)
_OPENERS = frozenset(b"[{")
_CLOSERS = frozenset(b"]}")


def json_depth_exceeds(body: bytes, limit: int = MAX_JSON_DEPTH) -> bool:
    """Whether the JSON text nests arrays and objects more than ``limit`` deep.

    Linear, and without building anything; brackets inside strings do not count.
    """
    if body.count(b"[") + body.count(b"{") <= limit:
        return False
    depth = 0
    for match in _JSON_TOKENS.finditer(body):
        first = match.group()[0]
        if first in _OPENERS:
            depth += 1
            if depth > limit:
                return True
        elif first in _CLOSERS:
            depth = max(0, depth - 1)
    return False


def _is_json(scope: Scope) -> bool:
    content_type = b""
    encoding = b""
    for name, value in scope.get("headers", []):
        if name == b"content-type":
            content_type = value.split(b";", 1)[0].strip().lower()
        elif name == b"content-encoding":
            encoding = value.strip().lower()
    if encoding not in (b"", b"identity"):
        return False
    return content_type == b"application/json" or (
        content_type.startswith(b"application/") and content_type.endswith(b"+json")
    )


class JsonDepthMiddleware:
    """Refuse JSON bodies nested deeper than ``max_depth`` with 422 malformed_json.

    Runs inside the body limit, so what it reads is bounded. A body the route decodes
    itself under another content type or encoding is guarded by the RecursionError
    handler instead (``errors.py``).
    """

    def __init__(self, app: ASGIApp, max_depth: int = MAX_JSON_DEPTH) -> None:
        self.app = app
        self.max_depth = max_depth

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("method") in ("GET", "HEAD", "OPTIONS") \
                or not _is_json(scope):
            await self.app(scope, receive, send)
            return
        body = await _read_body(receive)
        if body is None:
            await self.app(scope, receive, send)
            return
        if json_depth_exceeds(body, self.max_depth):
            await _send_json(send, 422, {"error": {
                "code": "malformed_json",
                "message": f"request body is nested more than {self.max_depth} levels deep",
                "field": "body",
            }})
            return
        await self.app(scope, _replaying(body, receive), send)


def _fleet_error(exc: BaseException) -> FleetError | None:
    """The FleetError behind ``exc`` (the framework re-raises one that came too late)."""
    seen: set[int] = set()
    stack: list[BaseException] = [exc]
    while stack:
        current = stack.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, FleetError):
            return current
        if isinstance(current, BaseExceptionGroup):
            stack.extend(current.exceptions)
        for linked in (current.__cause__, current.__context__):
            if linked is not None:
                stack.append(linked)
    return None


class StreamErrorMiddleware:
    """A response whose body fails before its first byte answers with the error.

    A streamed response (a CSV export) sends its status and headers before its body is
    made; an error raised making the first chunk used to leave the client a 200 and a
    body cut off. Here the start of the response is held until its first body message:
    a FleetError before it becomes its JSON error; anything else a 500 (and is re-raised
    for the server's log). An error after the first byte can only cut the body off.
    Server-sent events are passed straight through.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        held: Message | None = None
        flushed = False

        async def hold(message: Message) -> None:
            nonlocal held, flushed
            if not flushed and message["type"] == "http.response.start":
                headers = dict(message.get("headers", []))
                if not headers.get(b"content-type", b"").startswith(b"text/event-stream"):
                    held = message
                    return
            if held is not None:
                start, held = held, None
                await send(start)
            flushed = True
            await send(message)

        try:
            await self.app(scope, receive, hold)
        except Exception as exc:
            if held is None:
                raise
            error = _fleet_error(exc)
            if error is None:
                await _send_json(send, 500, {"error": {
                    "code": "internal_error", "message": "internal error; see the server log"}})
                raise
            log.info("response failed before its body: %s (%s)", error.code, error.message)
            await fleet_error_response(error)(scope, receive, send)
            return
        if held is not None:  # a start and no body at all: pass it on as it was
            await send(held)


class SecurityHeadersMiddleware:
    def __init__(self, app: ASGIApp, *, hsts: bool) -> None:
        self.app = app
        self.headers = [
            (b"x-content-type-options", b"nosniff"),
            (b"x-frame-options", b"DENY"),
            (b"referrer-policy", b"no-referrer"),
            (b"content-security-policy", b"default-src 'none'; frame-ancestors 'none'"),
            (b"cache-control", b"no-store"),
        ]
        if hsts:
            self.headers.append((b"strict-transport-security", b"max-age=63072000"))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                existing = {k.lower() for k, _ in message.get("headers", [])}
                message["headers"] = list(message.get("headers", [])) + [
                    (k, v) for k, v in self.headers if k not in existing
                ]
            await send(message)

        await self.app(scope, receive, with_headers)


class AccessLogMiddleware:
    """One log line and metric sample per request; paths by route template, never secrets."""

    def __init__(self, app: ASGIApp, metrics: ApiMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def capture(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, capture)
        finally:
            elapsed = time.perf_counter() - start
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            method = scope.get("method", "?")
            self.metrics.requests.labels(method, template, str(status)).inc()
            self.metrics.latency.labels(method, template).observe(elapsed)
            principal = getattr(scope.get("state", {}).get("principal"), "actor", None)
            log.info(
                "request",
                extra={"method": method, "route": template, "status": status,
                       "duration_ms": round(elapsed * 1000, 2), "actor": principal},
            )
