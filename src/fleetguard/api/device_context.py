"""What every route of the device endpoint is given: the shared context (database, CA,
ingest service, rate limits) and the caller, authenticated from its TLS client certificate.

The device app and its telemetry router both depend on this module, never on each other.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Annotated, ParamSpec, TypeVar

from fastapi import Depends, Request

from fleetguard.api.context import client_address
from fleetguard.core.errors import AuthenticationError, RateLimitedError
from fleetguard.identity import CallerIdentity, admission
from fleetguard.pki import FleetCA
from fleetguard.store import Database
from fleetguard.telemetry import IngestService

P = ParamSpec("P")
T = TypeVar("T")


@dataclass
class ClaimRateLimiter:
    """A token bucket per claim batch: a leaked claim certificate cannot mint at speed."""

    per_minute: int = 60
    burst: int = 20
    _buckets: dict[str, tuple[float, float]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def take(self, batch_id: str) -> None:
        now = time.monotonic()
        rate = self.per_minute / 60.0
        with self._lock:
            tokens, last = self._buckets.get(batch_id, (float(self.burst), now))
            tokens = min(float(self.burst), tokens + (now - last) * rate)
            if tokens < 1.0:
                raise RateLimitedError("claim enrollment rate exceeded for this batch",
                                       retry_after=(1.0 - tokens) / rate)
            self._buckets[batch_id] = (tokens - 1.0, now)


@dataclass
class DeviceContext:
    """The device endpoint's shared parts. The CA is kept current by the running process
    (``fleetguard.server.ca_reload``) when another process rotates it."""

    db: Database
    ca: FleetCA
    claim_limiter: ClaimRateLimiter
    ingest: IngestService | None = None
    short_writes: ShortWrites = field(init=False)

    def __post_init__(self) -> None:
        self.short_writes = ShortWrites(self.db)


class ShortWrites:
    """Where the device endpoint runs a short unit of work (one enrollment: about a
    millisecond of statements and one signature) without ever letting the event loop wait.

    On SQLite the units of this process take turns (they would queue on the writer lock
    anyway), and a unit whose turn comes while the writer lock is free runs right on the
    event loop: nothing in it can then wait on another writer. The hop to a worker thread
    and back, with the two threads handing the GIL to each other at every statement, cost
    about a third of an HTTPS enrollment. A unit that finds the lock held by another
    thread or process waits for it in a worker thread, as do all units on PostgreSQL,
    where a row lock may wait on any transaction.

    The workers are a few threads of its own rather than the shared thread pool: on
    PostgreSQL eight enrollments in eight threads spent more on handing the GIL around
    than two threads did on waiting for the database.
    """

    def __init__(self, db: Database, *, threads: int = 2) -> None:
        self._db = db
        self._workers = ThreadPoolExecutor(threads, thread_name_prefix="fg-short-writes")
        self._loop: asyncio.AbstractEventLoop | None = None
        self._turn = asyncio.Lock()

    def _turn_here(self) -> asyncio.Lock:
        # An asyncio lock belongs to one loop; a test client or a restarted server brings
        # a new one to the same app.
        loop = asyncio.get_running_loop()
        if loop is not self._loop:
            self._loop, self._turn = loop, asyncio.Lock()
        return self._turn

    async def run(self, work: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        lock = self._db.write_lock
        if lock is None:
            return await self._in_worker(work, *args, **kwargs)
        async with self._turn_here():
            if lock.acquire_if_free():
                try:
                    return work(*args, **kwargs)
                finally:
                    lock.release()
            return await self._in_worker(work, *args, **kwargs)

    async def _in_worker(self, work: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        call = functools.partial(contextvars.copy_context().run, work, *args, **kwargs)
        return await asyncio.get_running_loop().run_in_executor(self._workers, call)

    def close(self) -> None:
        self._workers.shutdown(wait=True)


async def get_device_context(request: Request) -> DeviceContext:
    ctx: DeviceContext = request.app.state.device_ctx
    return ctx


Ctx = Annotated[DeviceContext, Depends(get_device_context)]


def peer_certificate(request: Request) -> bytes | None:
    """The DER client certificate the TLS layer verified (None without one)."""
    der: bytes | None = getattr(request.state, "peer_cert_der", None)
    return der


def caller_identity(request: Request, ctx: Ctx) -> CallerIdentity:
    """The authenticated caller; a device is noted as seen, at its address, by the one
    writer of the registry's last-seen (the ingest service)."""
    der = peer_certificate(request)
    if der is None:
        raise AuthenticationError("a client certificate is required", code="client_cert_required")
    source = client_address(request)
    with ctx.db.session() as session:
        caller = admission.authenticate_peer_certificate(session, der, source=source)
    if caller.kind == "device" and ctx.ingest is not None:
        ctx.ingest.note_device_seen(caller.subject_id, source)
    return caller


Caller = Annotated[CallerIdentity, Depends(caller_identity)]
