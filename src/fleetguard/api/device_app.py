"""The device endpoint: HTTPS with mutual TLS on its own port.

The caller's identity always comes from the TLS-verified client certificate, checked
again against the database on every request (so a revocation or decommission bites at
the next request), never from a header or a body field.
"""

from __future__ import annotations

import re
from pathlib import Path

from fastapi import APIRouter, FastAPI, Request, Response
from pydantic import BaseModel

from fleetguard.api.context import client_address
from fleetguard.api.device_context import (
    Caller,
    ClaimRateLimiter,
    Ctx,
    DeviceContext,
    peer_certificate,
)
from fleetguard.api.device_telemetry import router as telemetry_router
from fleetguard.api.errors import install_error_handlers
from fleetguard.api.middleware import BodyLimitMiddleware, SecurityHeadersMiddleware
from fleetguard.core.errors import AuthenticationError, NotFoundError
from fleetguard.identity import EnrollmentResult, admission
from fleetguard.identity import service as identity
from fleetguard.pki import FleetCA
from fleetguard.protocol import (
    CA_BUNDLE_PATH,
    ENROLL_PATH,
    MAX_MESSAGE_BYTES,
    RENEW_PATH,
    CertificateResponse,
    EnrollRequest,
    RenewRequest,
)
from fleetguard.store import Database
from fleetguard.telemetry import IngestService

_CA_ID = re.compile(r"[0-9a-f]{1,64}", re.ASCII)

# Room for the protocol's own limit, so an oversized message is refused and counted there.
MAX_DEVICE_BODY = MAX_MESSAGE_BYTES + 64 * 1024


def _certificate_response(result: EnrollmentResult) -> CertificateResponse:
    return CertificateResponse(
        device_id=result.device_id, serial=result.serial_hex,
        certificate_pem=result.certificate_pem, chain_pem=result.chain_pem,
        ca_bundle_pem=result.ca_bundle_pem, not_after=result.not_after,
    )


class WhoAmI(BaseModel):
    kind: str
    id: str
    serial: str


router = APIRouter()


@router.post(ENROLL_PATH, status_code=201)
async def enroll(body: EnrollRequest, request: Request, ctx: Ctx) -> CertificateResponse:
    """With a one-time token, or with the batch claim certificate and an allowed serial."""
    return await ctx.short_writes.run(_enroll, body, request, ctx)


def _enroll(body: EnrollRequest, request: Request, ctx: DeviceContext) -> CertificateResponse:
    source = client_address(request)
    if body.token:
        with ctx.db.session() as session:
            result = identity.enroll_with_token(
                session, ctx.ca, token=body.token, csr=body.csr, source=source
            )
        return _certificate_response(result)
    der = peer_certificate(request)
    if der is None:
        raise AuthenticationError(
            "enroll with a token, or present the batch claim certificate",
            code="enrollment_credential_required",
        )
    with ctx.db.session() as session:
        caller = admission.authenticate_peer_certificate(session, der, source=source)
        if caller.kind == "claim":
            ctx.claim_limiter.take(caller.subject_id)
        result = identity.enroll_with_claim(
            session, ctx.ca, caller, serial=body.serial or "", csr=body.csr, source=source,
        )
    return _certificate_response(result)


@router.post(RENEW_PATH, status_code=201)
def renew(body: RenewRequest, request: Request, caller: Caller, ctx: Ctx) -> CertificateResponse:
    """A valid device certificate and a CSR for a new key, before expiry."""
    with ctx.db.session() as session:
        result = identity.renew_certificate(
            session, ctx.ca, caller, csr=body.csr, source=client_address(request)
        )
    return _certificate_response(result)


@router.get("/v1/whoami")
def whoami(caller: Caller) -> WhoAmI:
    if caller.kind != "device":
        raise AuthenticationError("a claim certificate may only enroll", code="claim_not_allowed")
    return WhoAmI(kind=caller.kind, id=caller.subject_id, serial=caller.serial_hex)


@router.get(CA_BUNDLE_PATH)
def ca_bundle(ctx: Ctx) -> Response:
    return Response(ctx.ca.bundle_pem(), media_type="application/x-pem-file")


@router.get("/v1/crl.pem")
def crl_pem(ctx: Ctx) -> Response:
    path = Path(ctx.ca.crl_directory) / "crls.pem"
    return Response(path.read_bytes(), media_type="application/x-pem-file")


@router.get("/v1/crl/{ca_id}.der")
def crl_der(ca_id: str, ctx: Ctx) -> Response:
    # A CA id is lower-case hex: anything else names no CRL, and never reaches a path
    # (a 300-character name made the file system refuse it with a 500).
    if _CA_ID.fullmatch(ca_id) is None:
        raise NotFoundError("no such CRL")
    path = Path(ctx.ca.crl_directory) / f"{ca_id}.crl.der"
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise NotFoundError("no such CRL") from None
    return Response(data, media_type="application/pkix-crl")


def create_device_app(db: Database, ca: FleetCA, *, ingest: IngestService | None = None) -> FastAPI:
    own_ingest = ingest is None
    app = FastAPI(title="fleetguard device endpoint", openapi_url=None, docs_url=None,
                  redoc_url=None)
    app.state.device_ctx = DeviceContext(
        db=db, ca=ca, claim_limiter=ClaimRateLimiter(),
        ingest=ingest if ingest is not None else IngestService(db),
    )
    app.include_router(router)
    app.include_router(telemetry_router)
    if own_ingest:  # stored before the server stops (started by the first message)
        app.router.on_shutdown.append(app.state.device_ctx.ingest.stop)
    app.router.on_shutdown.append(app.state.device_ctx.short_writes.close)
    install_error_handlers(app)
    app.add_middleware(SecurityHeadersMiddleware, hsts=True)
    app.add_middleware(BodyLimitMiddleware, max_bytes=MAX_DEVICE_BODY)
    return app
