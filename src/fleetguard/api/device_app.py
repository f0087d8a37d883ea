"""The device endpoint: HTTPS with mutual TLS on its own port.

The caller's identity always comes from the TLS-verified client certificate, checked
again against the database on every request (so a revocation or decommission bites at
the next request), never from a header or a body field.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import os
import re
import ssl
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, ParamSpec, TypeVar

from fastapi import Depends, FastAPI, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from fleetguard.api.context import client_address
from fleetguard.api.errors import install_error_handlers
from fleetguard.api.middleware import BodyLimitMiddleware, SecurityHeadersMiddleware
from fleetguard.core.errors import AuthenticationError, NotFoundError, RateLimitedError
from fleetguard.identity import CallerIdentity, EnrollmentResult
from fleetguard.identity import service as identity
from fleetguard.pki import FleetCA
from fleetguard.protocol import MAX_MESSAGE_BYTES
from fleetguard.store import Database
from fleetguard.telemetry import IngestService

_CA_ID = re.compile(r"[0-9a-f]{1,64}", re.ASCII)

# Room for the protocol's own limit, so an oversized message is refused and counted there.
MAX_DEVICE_BODY = MAX_MESSAGE_BYTES + 64 * 1024

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
    db: Database
    ca: FleetCA
    claim_limiter: ClaimRateLimiter
    ssl_context: ssl.SSLContext | None = None
    ingest: IngestService | None = None
    short_writes: ShortWrites = field(init=False)
    _manifest: str = field(init=False)
    _manifest_mtime: float = 0.0

    def __post_init__(self) -> None:
        self.short_writes = ShortWrites(self.db)
        self._manifest = str(Path(self.ca.directory) / "manifest.json")

    def current_ca(self) -> FleetCA:
        """Pick up a CA rotation made by another process (one stat per request)."""
        mtime = os.stat(self._manifest).st_mtime
        if mtime != self._manifest_mtime:
            if self._manifest_mtime:
                self.ca.reload()
                if self.ssl_context is not None:
                    # New issuing CAs join the live handshake trust store; old ones stay.
                    self.ssl_context.load_verify_locations(cadata=self.ca.bundle_pem().decode())
            self._manifest_mtime = mtime
        return self.ca


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid")


class EnrollRequest(StrictModel):
    csr: str = Field(min_length=1, max_length=16384, description="PEM certificate request")
    token: str | None = Field(default=None, max_length=300)
    serial: str | None = Field(default=None, max_length=128)


class RenewRequest(StrictModel):
    csr: str = Field(min_length=1, max_length=16384)


class CertificateResponse(BaseModel):
    device_id: str
    serial: str
    certificate_pem: str
    chain_pem: str
    ca_bundle_pem: str
    not_after: str

    @classmethod
    def of(cls, r: EnrollmentResult) -> CertificateResponse:
        return cls(device_id=r.device_id, serial=r.serial_hex, certificate_pem=r.certificate_pem,
                   chain_pem=r.chain_pem, ca_bundle_pem=r.ca_bundle_pem,
                   not_after=r.not_after.isoformat())


class WhoAmI(BaseModel):
    kind: str
    id: str
    serial: str


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


def _peer(request: Request) -> bytes | None:
    der: bytes | None = getattr(request.state, "peer_cert_der", None)
    return der


def caller_identity(request: Request, ctx: Ctx) -> CallerIdentity:
    der = _peer(request)
    if der is None:
        raise AuthenticationError("a client certificate is required", code="client_cert_required")
    with ctx.db.session() as session:
        return identity.authenticate_peer_certificate(
            session, der, source=client_address(request)
        )


Caller = Annotated[CallerIdentity, Depends(caller_identity)]


def create_device_app(
    db: Database, ca: FleetCA, *, ssl_context: ssl.SSLContext | None = None,
    ingest: IngestService | None = None,
) -> FastAPI:
    from fleetguard.api.device_telemetry import router as telemetry_router

    own_ingest = ingest is None
    app = FastAPI(title="fleetguard device endpoint", openapi_url=None, docs_url=None,
                  redoc_url=None)
    app.state.device_ctx = DeviceContext(
        db=db, ca=ca, claim_limiter=ClaimRateLimiter(), ssl_context=ssl_context,
        ingest=ingest if ingest is not None else IngestService(db),
    )
    app.include_router(telemetry_router)
    if own_ingest:  # stored before the server stops (started by the first message)
        app.router.on_shutdown.append(app.state.device_ctx.ingest.stop)
    app.router.on_shutdown.append(app.state.device_ctx.short_writes.close)

    @app.post("/v1/enroll", status_code=201)
    async def enroll(body: EnrollRequest, request: Request, ctx: Ctx) -> CertificateResponse:
        """With a one-time token, or with the batch claim certificate and an allowed serial."""
        return await ctx.short_writes.run(_enroll, body, request, ctx)

    def _enroll(body: EnrollRequest, request: Request, ctx: Ctx) -> CertificateResponse:
        source = client_address(request)
        fleet_ca = ctx.current_ca()
        if body.token:
            with ctx.db.session() as session:
                result = identity.enroll_with_token(
                    session, fleet_ca, token=body.token, csr=body.csr, source=source
                )
            return CertificateResponse.of(result)
        der = _peer(request)
        if der is None:
            raise AuthenticationError(
                "enroll with a token, or present the batch claim certificate",
                code="enrollment_credential_required",
            )
        with ctx.db.session() as session:
            caller = identity.authenticate_peer_certificate(session, der, source=source)
            if caller.kind == "claim":
                ctx.claim_limiter.take(caller.subject_id)
            result = identity.enroll_with_claim(
                session, fleet_ca, caller, serial=body.serial or "", csr=body.csr, source=source,
            )
        return CertificateResponse.of(result)

    @app.post("/v1/renew", status_code=201)
    def renew(
        body: RenewRequest, request: Request, caller: Caller, ctx: Ctx
    ) -> CertificateResponse:
        """A valid device certificate and a CSR for a new key, before expiry."""
        with ctx.db.session() as session:
            result = identity.renew_certificate(
                session, ctx.current_ca(), caller, csr=body.csr, source=client_address(request)
            )
        return CertificateResponse.of(result)

    @app.get("/v1/whoami")
    def whoami(caller: Caller) -> WhoAmI:
        if caller.kind != "device":
            raise AuthenticationError("a claim certificate may only enroll",
                                      code="claim_not_allowed")
        return WhoAmI(kind=caller.kind, id=caller.subject_id, serial=caller.serial_hex)

    @app.get("/v1/ca.pem")
    def ca_bundle(ctx: Ctx) -> Response:
        return Response(ctx.current_ca().bundle_pem(), media_type="application/x-pem-file")

    @app.get("/v1/crl.pem")
    def crl_pem(ctx: Ctx) -> Response:
        path = Path(ctx.current_ca().crl_directory) / "crls.pem"
        return Response(path.read_bytes(), media_type="application/x-pem-file")

    @app.get("/v1/crl/{ca_id}.der")
    def crl_der(ca_id: str, ctx: Ctx) -> Response:
        # A CA id is lower-case hex: anything else names no CRL, and never reaches a path
        # (a 300-character name made the file system refuse it with a 500).
        if _CA_ID.fullmatch(ca_id) is None:
            raise NotFoundError("no such CRL")
        path = Path(ctx.current_ca().crl_directory) / f"{ca_id}.crl.der"
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise NotFoundError("no such CRL") from None
        return Response(data, media_type="application/pkix-crl")

    install_error_handlers(app)
    app.add_middleware(SecurityHeadersMiddleware, hsts=True)
    app.add_middleware(BodyLimitMiddleware, max_bytes=MAX_DEVICE_BODY)
    return app
