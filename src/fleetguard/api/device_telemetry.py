"""Device telemetry over HTTPS: reports, heartbeats, commands and their results.

Every route takes the device's identity from its verified client certificate only
(``caller_identity``); the body never names the device. Bodies are JSON or CBOR by
Content-Type, decoded by ``fleetguard.protocol``.

    POST /v1/telemetry        202 {"accepted": true, "seq": n}     4xx with the counted reason
    POST /v1/heartbeat        202 {"accepted": true}
    GET  /v1/commands         200 {"commands": [<wire command>, ...]}   (may be empty)
    POST /v1/commands/result  200 {"id": ..., "state": ...}     404 another device's command,
                                                                409 a second, different result

A refused message answers ``{"error": {"code": "message_rejected", "reason": <reason>,
"message": ...}}`` with 413 (too large), 415 (content type) or 422 (anything else).
"""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from fleetguard.api.device_context import Caller, Ctx, DeviceContext
from fleetguard.core.errors import AuthenticationError
from fleetguard.protocol import MessageKind, MessageRejectedError
from fleetguard.telemetry import (
    IngestOverloadedError,
    IngestService,
    IngestStoppedError,
    ReportFacts,
    pending_commands,
)

router = APIRouter(prefix="/v1")
# How long a command result waits for its batch to be stored; a repeat of the same result
# is accepted, so a device that gives up and sends it again loses nothing.
RESULT_WAIT_S = 30.0


def device_id_of(caller: Caller) -> str:
    """The calling device (``caller_identity`` noted it as seen); a claim may only enroll."""
    if caller.kind != "device":
        raise AuthenticationError("a claim certificate may only enroll", code="claim_not_allowed")
    return caller.subject_id


DeviceId = Annotated[str, Depends(device_id_of)]


def _ingest(ctx: DeviceContext) -> IngestService:
    if ctx.ingest is None:
        raise IngestStoppedError("telemetry ingestion is not running")
    return ctx.ingest


def _rejected(exc: MessageRejectedError) -> JSONResponse:
    return JSONResponse(
        {"error": {"code": exc.code, "reason": exc.reason.value, "message": exc.message}},
        status_code=exc.http_status,
    )


async def _submit(
    request: Request, ctx: DeviceContext, device_id: str, kind: MessageKind
) -> dict[str, Any] | JSONResponse:
    service = _ingest(ctx)
    data = await request.body()
    content_type = request.headers.get("content-type", "")
    try:
        facts = await run_in_threadpool(service.submit, device_id, kind, data, content_type)
    except MessageRejectedError as exc:
        return _rejected(exc)
    out: dict[str, Any] = {"accepted": True}
    if isinstance(facts, ReportFacts):
        out["seq"] = facts.seq
    return out


@router.post("/telemetry", status_code=202, response_model=None)
async def post_telemetry(
    request: Request, ctx: Ctx, device_id: DeviceId
) -> dict[str, Any] | JSONResponse:
    return await _submit(request, ctx, device_id, MessageKind.TELEMETRY)


@router.post("/heartbeat", status_code=202, response_model=None)
async def post_heartbeat(
    request: Request, ctx: Ctx, device_id: DeviceId
) -> dict[str, Any] | JSONResponse:
    return await _submit(request, ctx, device_id, MessageKind.HEARTBEAT)


@router.get("/commands")
def get_commands(ctx: Ctx, device_id: DeviceId) -> dict[str, list[dict[str, Any]]]:
    with ctx.db.session() as session:
        commands = pending_commands(session, device_id)
    return {"commands": [c.model_dump(mode="json", exclude_none=True) for c in commands]}


@router.post("/commands/result", response_model=None)
async def post_command_result(
    request: Request, ctx: Ctx, device_id: DeviceId
) -> dict[str, Any] | JSONResponse:
    """Stored by the ingest service's writer, as results sent over MQTT are: a refusal
    (malformed, another device's command, a second different result) is counted."""
    service = _ingest(ctx)
    data = await request.body()
    content_type = request.headers.get("content-type", "")
    try:
        stored = await run_in_threadpool(
            service.submit_command_result, device_id, data, content_type)
    except MessageRejectedError as exc:
        return _rejected(exc)
    try:
        done = await asyncio.wait_for(asyncio.wrap_future(stored), RESULT_WAIT_S)
    except TimeoutError:
        raise IngestOverloadedError("the result is queued but not yet stored; send it again",
                                    retry_after=1.0) from None
    return {"id": done.id, "state": done.state.value}


__all__ = ["router"]

