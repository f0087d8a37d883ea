"""Device telemetry over HTTPS: reports, heartbeats, commands and their results.

Every route takes the device's identity from its verified client certificate only
(``caller_identity``); the body never names the device. Bodies are JSON or CBOR by
Content-Type, decoded by ``fleetguard.protocol``.

    POST /v1/telemetry        202 {"accepted": true, "seq": n}     4xx with the counted reason
    POST /v1/heartbeat        202 {"accepted": true}
    GET  /v1/commands         200 {"commands": [<wire command>, ...]}   (may be empty)
    POST /v1/commands/result  200 {"id": ..., "state": ...}

A refused message answers ``{"error": {"code": "message_rejected", "reason": <reason>,
"message": ...}}`` with 413 (too large), 415 (content type) or 422 (anything else).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from fleetguard.api.context import client_address
from fleetguard.api.device_context import Caller, Ctx, DeviceContext
from fleetguard.core.errors import AuthenticationError
from fleetguard.protocol import (
    CommandResult,
    MessageKind,
    MessageRejectedError,
    decode_message,
)
from fleetguard.telemetry import (
    IngestService,
    IngestStoppedError,
    ReportFacts,
    pending_commands,
    record_command_result,
)

router = APIRouter(prefix="/v1")


def device_id_of(caller: Caller, request: Request, ctx: Ctx) -> str:
    """The calling device, noted as seen (at its address) by the telemetry writer."""
    if caller.kind != "device":
        raise AuthenticationError("a claim certificate may only enroll", code="claim_not_allowed")
    if ctx.ingest is not None:
        ctx.ingest.note_device_seen(caller.subject_id, client_address(request))
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
    data = await request.body()
    content_type = request.headers.get("content-type", "")
    try:
        message = decode_message(data, content_type, expect=MessageKind.COMMAND_RESULT)
    except MessageRejectedError as exc:
        if ctx.ingest is not None:
            ctx.ingest.record_rejection(device_id, exc.reason)
        return _rejected(exc)
    assert isinstance(message, CommandResult)

    def store() -> dict[str, Any]:
        with ctx.db.session() as session:
            done = record_command_result(session, device_id, message)
        return {"id": done.id, "state": done.state.value}

    return await run_in_threadpool(store)


__all__ = ["router"]

