"""Scans, their findings and scan schedules, for operators.

``POST /api/v1/scans`` takes either a report made elsewhere (``{"report": {...},
"ports": "default"}``, as ``fleetguard scan --server`` sends it, optionally gzip-encoded
with ``Content-Encoding: gzip``) or targets for the server to scan in the background
(``{"targets": [...], "ports": ..., "options": {...}}``).
"""

from __future__ import annotations

import json
import zlib
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, TypeAdapter, ValidationError
from starlette.concurrency import run_in_threadpool

from fleetguard import findings
from fleetguard.api.authz import requires
from fleetguard.api.context import AppContext, get_context
from fleetguard.api.schemas_scans import (
    FindingOut,
    FindingPageOut,
    FindingSummaryOut,
    ScanDetailOut,
    ScanHostOut,
    ScanOut,
    ScanPageOut,
    ScanStart,
    ScanUpload,
    ScheduleCreate,
    ScheduleOut,
)
from fleetguard.core.errors import PayloadTooLargeError, ValidationFailedError
from fleetguard.findings import FindingFilter, FindingState, ScanStatus, Severity
from fleetguard.operators import Permission, Principal
from fleetguard.protocol.scan_report import MAX_REPORT_BYTES, parse_scan_report
from fleetguard.registry import service as registry
from fleetguard.scan import parse_ports

router = APIRouter(prefix="/api/v1", tags=["scans"])
Ctx = Annotated[AppContext, Depends(get_context)]
Reader = Annotated[Principal, Depends(requires(Permission.DEVICES_READ))]
Writer = Annotated[Principal, Depends(requires(Permission.DEVICES_WRITE))]

#: A gzip-encoded upload may expand to this much JSON (the body itself is capped by the
#: server's body limit, 1 MiB).
MAX_DECODED_BYTES = MAX_REPORT_BYTES
MAX_HOSTS_SHOWN = 1000
M = TypeVar("M", bound=BaseModel)

def _inlined(schema: Any, defs: dict[str, Any]) -> Any:
    """The schema with every ``#/$defs/X`` replaced by X itself (the body is read by hand,
    so no component of the document holds these models)."""
    if isinstance(schema, dict):
        ref = schema.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/$defs/"):
            return _inlined(defs[ref.removeprefix("#/$defs/")], defs)
        return {k: _inlined(v, defs) for k, v in schema.items() if k != "$defs"}
    if isinstance(schema, list):
        return [_inlined(v, defs) for v in schema]
    return schema


_BODY_SCHEMA = TypeAdapter(ScanUpload | ScanStart).json_schema()
_UPLOAD_DOC = {
    "requestBody": {
        "required": True,
        "description": "Either ScanUpload ({report, ports}) or ScanStart ({targets, ports, "
        "options}); JSON, optionally with Content-Encoding: gzip.",
        "content": {"application/json": {
            "schema": _inlined(_BODY_SCHEMA, _BODY_SCHEMA.get("$defs", {}))}},
    }
}


def _decode_body(raw: bytes, encoding: str) -> object:
    encoding = encoding.strip().lower()
    if encoding in ("gzip", "x-gzip"):
        inflater = zlib.decompressobj(wbits=31)
        try:
            raw = inflater.decompress(raw, MAX_DECODED_BYTES + 1)
        except zlib.error:
            raise ValidationFailedError("body is not valid gzip", field="body") from None
        if len(raw) > MAX_DECODED_BYTES or inflater.unconsumed_tail:
            raise PayloadTooLargeError(f"decoded body over {MAX_DECODED_BYTES} bytes")
    elif encoding not in ("", "identity"):
        raise ValidationFailedError(f"unsupported Content-Encoding {encoding!r}", field="body")
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise ValidationFailedError("request body is not valid JSON", field="body",
                                    code="malformed_json") from None


def _validated(model: type[M], body: object) -> M:
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        field = ".".join(str(p) for p in first.get("loc", ())) or "body"
        raise ValidationFailedError(f"{field}: {first.get('msg', 'invalid value')}",
                                    field=field) from None


def _ports_of_upload(upload: ScanUpload) -> frozenset[tuple[str, int]] | None:
    if upload.ports is None:
        return None
    ports = frozenset((p.transport.value, p.port) for p in parse_ports(upload.ports))
    declared = upload.report.get("options", {}).get("ports") if isinstance(
        upload.report.get("options"), dict) else None
    if isinstance(declared, int) and declared != len(ports):
        raise ValidationFailedError(
            f"ports names {len(ports)} ports but the report scanned {declared}", field="ports"
        )
    return ports


@router.post("/scans", status_code=201, openapi_extra=_UPLOAD_DOC, responses={
    202: {"model": ScanOut, "description": "targets given: the scan started in the background"},
})
async def create_scan(
    request: Request, response: Response, ctx: Ctx, principal: Writer
) -> ScanOut:
    """Store an uploaded report (201, with what it changed) or start a scan (202)."""
    raw = await request.body()
    encoding = request.headers.get("content-encoding", "")
    # Decoding, validating and storing a large report is CPU and database work: off the loop.
    scan, started = await run_in_threadpool(_create_scan, ctx, principal, raw, encoding)
    if started:
        response.status_code = 202
    return ScanOut.of(scan)


def _create_scan(
    ctx: AppContext, principal: Principal, raw: bytes, encoding: str
) -> tuple[findings.Scan, bool]:
    body = _decode_body(raw, encoding)
    if not isinstance(body, dict):
        raise ValidationFailedError("body must be a JSON object", field="body")
    if "report" in body:
        upload = _validated(ScanUpload, body)
        ports = _ports_of_upload(upload)
        document = parse_scan_report(upload.report)
        with ctx.db.session() as session:
            scan = findings.ingest_report(
                session, document, actor=principal.actor, scanned_ports=ports
            )
        return scan, False
    if "targets" in body:
        start = _validated(ScanStart, body)
        scan = ctx.scans.start_scan(
            actor=principal.actor, targets=start.targets, ports=start.ports,
            options=start.options.model_dump(),
        )  # fmt: skip
        return scan, True
    raise ValidationFailedError(
        "give either a report to store ({report, ports}) or targets to scan "
        "({targets, ports, options})", field="body",
    )  # fmt: skip


@router.get("/scans")
def list_scans(
    ctx: Ctx, _: Reader,
    status: Annotated[ScanStatus | None, Query()] = None,
    cursor: Annotated[str | None, Query(max_length=300)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> ScanPageOut:
    with ctx.db.read_session() as session:
        page = findings.list_scans(session, status=status, cursor=cursor, limit=limit)
    return ScanPageOut(scans=[ScanOut.of(s) for s in page.scans], next_cursor=page.next_cursor)


@router.get("/scans/{scan_id}")
def get_scan(scan_id: str, ctx: Ctx, _: Reader) -> ScanDetailOut:
    """The scan with its progress and the hosts it matched (first 1000)."""
    with ctx.db.read_session() as session:
        scan = findings.get_scan(session, scan_id)
        hosts = findings.scan_hosts(session, scan_id)
    return ScanDetailOut(
        **ScanOut.of(scan).model_dump(),
        hosts=[ScanHostOut.of(h) for h in hosts[:MAX_HOSTS_SHOWN]],
        hosts_truncated=len(hosts) > MAX_HOSTS_SHOWN,
    )


@router.get("/scans/{scan_id}/report")
def get_scan_report(scan_id: str, ctx: Ctx, _: Reader) -> JSONResponse:
    """The report document (fleetguard.scan/1) exactly as stored."""
    with ctx.db.read_session() as session:
        document: dict[str, Any] = findings.scan_report(session, scan_id)
    return JSONResponse(document)


def _page(
    ctx: AppContext, flt: FindingFilter, cursor: str | None, limit: int
) -> FindingPageOut:
    with ctx.db.read_session() as session:
        page = findings.list_findings(session, flt, cursor=cursor, limit=limit)
    return FindingPageOut(findings=[FindingOut.of(f) for f in page.findings],
                          next_cursor=page.next_cursor)


Check = Annotated[str | None, Query(max_length=64, description="e.g. default-credentials")]
SeverityQ = Annotated[Severity | None, Query()]
StateQ = Annotated[FindingState | None, Query(description="open or resolved")]
Cursor = Annotated[str | None, Query(max_length=300)]
Limit = Annotated[int, Query(ge=1, le=500)]


@router.get("/findings")
def list_findings(
    ctx: Ctx, _: Reader,
    device_id: Annotated[str | None, Query(max_length=36)] = None,
    unmatched: Annotated[bool | None, Query(description="only hosts no device claims")] = None,
    host: Annotated[str | None, Query(max_length=45)] = None,
    severity: SeverityQ = None,
    min_severity: SeverityQ = None,
    check: Check = None,
    state: StateQ = None,
    cursor: Cursor = None,
    limit: Limit = 100,
) -> FindingPageOut:
    """Worst first. Filters combine."""
    flt = FindingFilter(
        device_id=device_id, unmatched=unmatched, host=host,
        severity=severity, min_severity=min_severity, check=check, state=state,
    )  # fmt: skip
    return _page(ctx, flt, cursor, limit)


@router.get("/findings/summary")
def findings_summary(ctx: Ctx, _: Reader) -> FindingSummaryOut:
    """Counts by severity, open and resolved."""
    with ctx.db.read_session() as session:
        opened = findings.count_findings_by_severity(session, state=FindingState.OPEN)
        resolved = findings.count_findings_by_severity(session, state=FindingState.RESOLVED)
    return FindingSummaryOut(
        open={s.value: n for s, n in opened.items()},
        resolved={s.value: n for s, n in resolved.items()},
    )


@router.get("/devices/{device_id}/findings")
def device_findings(
    device_id: str, ctx: Ctx, _: Reader,
    severity: SeverityQ = None, check: Check = None, state: StateQ = None,
    cursor: Cursor = None, limit: Limit = 100,
) -> FindingPageOut:
    with ctx.db.read_session() as session:
        device = registry.get_device(session, device_id)
    flt = FindingFilter(
        device_id=device.id, severity=severity, check=check, state=state,
    )  # fmt: skip
    return _page(ctx, flt, cursor, limit)


@router.get("/scan-schedules")
def list_schedules(ctx: Ctx, _: Reader) -> list[ScheduleOut]:
    with ctx.db.read_session() as session:
        return [ScheduleOut.of(s) for s in findings.list_schedules(session)]


@router.post("/scan-schedules", status_code=201)
def create_schedule(body: ScheduleCreate, ctx: Ctx, principal: Writer) -> ScheduleOut:
    """Scan these targets every ``interval_s`` seconds (targets and ports are checked now)."""
    from datetime import timedelta

    options = body.options.model_dump()
    ctx.scans.scan_options(body.targets, body.ports, options)
    if body.first_run_at is not None and body.first_run_at.tzinfo is None:
        raise ValidationFailedError("first_run_at needs a time zone", field="first_run_at")
    with ctx.db.session() as session:
        schedule = findings.create_schedule(
            session, actor=principal.actor, name=body.name, targets=body.targets,
            ports=body.ports, options=options, interval=timedelta(seconds=body.interval_s),
            first_run_at=body.first_run_at,
        )  # fmt: skip
    return ScheduleOut.of(schedule)


@router.delete("/scan-schedules/{schedule_id}", status_code=204)
def delete_schedule(schedule_id: str, ctx: Ctx, principal: Writer) -> None:
    with ctx.db.session() as session:
        findings.delete_schedule(session, schedule_id, actor=principal.actor)
