"""Server-sent events: device state changes and certificate revocations, as they are
audited; and a running scan's progress.

The audit log is where every state change lands (in the same transaction as the change),
so the stream follows it from a sequence number: nothing is missed between pages, and a
reconnecting browser resumes from ``Last-Event-ID``. A stream lasts at most a minute and
the browser reconnects, which also re-checks its session.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from starlette.concurrency import run_in_threadpool

from fleetguard import auditlog, findings
from fleetguard.api.context import AppContext, get_context
from fleetguard.auditlog import AuditEntry
from fleetguard.core.errors import NotFoundError
from fleetguard.dashboard.security import PAGE_HEADERS, PageForbidden, page_access
from fleetguard.operators import Permission, Principal

router = APIRouter(include_in_schema=False)
Ctx = Annotated[AppContext, Depends(get_context)]
STREAM_SECONDS = 55.0
POLL_SECONDS = 1.0


def _event(entry: AuditEntry) -> dict[str, object] | None:
    kind, _, ident = entry.target.partition(":")
    if entry.action.startswith("device.state.") and kind == "device":
        return {"kind": "state", "device_id": ident, "state": entry.details.get("to"),
                "seq": entry.seq, "at": entry.at.isoformat(), "actor": entry.actor}
    if entry.action == "certificate.revoke" and kind == "certificate":
        return {"kind": "revoke", "device_id": entry.details.get("device"), "serial": ident,
                "seq": entry.seq, "at": entry.at.isoformat(), "actor": entry.actor}
    return None


def _after(ctx: AppContext, after: int) -> list[AuditEntry]:
    with ctx.db.session() as session:
        return auditlog.list_audit_entries(session, after_seq=after, limit=200)


def _head(ctx: AppContext) -> int:
    with ctx.db.session() as session:
        return auditlog.chain_head(session).seq


@router.get("/events")
async def events(
    request: Request, ctx: Ctx,
    principal: Annotated[Principal, Depends(page_access(Permission.DEVICES_READ))],
    after: Annotated[int | None, Query(ge=0)] = None,
    seconds: Annotated[float, Query(gt=0, le=STREAM_SECONDS)] = STREAM_SECONDS,
) -> StreamingResponse:
    if not principal.can(Permission.AUDIT_READ):
        raise PageForbidden("live updates follow the audit log", "permission_denied")
    resume = request.headers.get("last-event-id", "")
    start = int(resume) if resume.isdigit() else after
    if start is None:
        start = await run_in_threadpool(_head, ctx)

    async def stream() -> AsyncIterator[str]:
        last = start
        deadline = time.monotonic() + seconds
        yield f"retry: 2000\nid: {last}\nevent: hello\ndata: {{}}\n\n"
        while time.monotonic() < deadline:
            if await request.is_disconnected():
                return
            for entry in await run_in_threadpool(_after, ctx, last):
                last = entry.seq
                event = _event(entry)
                if event is not None:
                    yield f"id: {last}\nevent: device\ndata: {json.dumps(event)}\n\n"
            yield f"id: {last}\n: keep-alive\n\n"
            await asyncio.sleep(POLL_SECONDS)

    headers = {**PAGE_HEADERS, "X-Accel-Buffering": "no"}
    return StreamingResponse(stream(), media_type="text/event-stream", headers=headers)


def _progress(ctx: AppContext, scan_id: str) -> dict[str, object]:
    with ctx.db.read_session() as session:
        scan = findings.get_scan(session, scan_id)
    return {"status": scan.status.value, "done": scan.progress_done,
            "total": scan.progress_total, "percent": round(scan.progress * 100),
            "hosts_up": scan.hosts_up, "findings": scan.findings_total, "error": scan.error}


@router.get("/scans/{scan_id}/events")
async def scan_events(
    scan_id: str, request: Request, ctx: Ctx,
    principal: Annotated[Principal, Depends(page_access(Permission.DEVICES_READ))],
    seconds: Annotated[float, Query(gt=0, le=STREAM_SECONDS)] = STREAM_SECONDS,
) -> Response:
    """A scan's progress once a second while it runs; the last event has its final status."""
    try:
        first = await run_in_threadpool(_progress, ctx, scan_id)
    except NotFoundError as exc:
        return JSONResponse({"error": {"code": exc.code, "message": exc.message}},
                            status_code=404, headers=PAGE_HEADERS)

    async def stream() -> AsyncIterator[str]:
        current = first
        deadline = time.monotonic() + seconds
        yield "retry: 2000\n\n"
        while True:
            yield f"event: progress\ndata: {json.dumps(current)}\n\n"
            if current["status"] != "running" or time.monotonic() >= deadline:
                return
            if await request.is_disconnected():
                return
            await asyncio.sleep(POLL_SECONDS)
            current = await run_in_threadpool(_progress, ctx, scan_id)

    headers = {**PAGE_HEADERS, "X-Accel-Buffering": "no"}
    return StreamingResponse(stream(), media_type="text/event-stream", headers=headers)
