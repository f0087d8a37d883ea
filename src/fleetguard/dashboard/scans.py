"""Scans and findings: start a scan of a range with its safety options, watch it live,
browse its results by host and by check, export them; the fleet's findings list.

Scans run through the same job runner as ``POST /api/v1/scans`` (the context's ``scans``);
the options are validated by the API's own schema, so the bounds are the same.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterator
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import (
    HTMLResponse,
    JSONResponse,
    RedirectResponse,
    Response,
    StreamingResponse,
)
from pydantic import ValidationError

from fleetguard import findings
from fleetguard.api.schemas import optional_choice
from fleetguard.api.schemas_scans import ScanStart
from fleetguard.core.errors import FleetError, NotFoundError, ValidationFailedError
from fleetguard.core.severity import Severity
from fleetguard.core.spreadsheet import csv_cell
from fleetguard.dashboard.deps import Ctx, DeviceReader, DeviceWriter, not_found
from fleetguard.dashboard.render import page, page_links
from fleetguard.dashboard.security import PAGE_HEADERS
from fleetguard.findings import FindingFilter, FindingState
from fleetguard.protocol.scan_report import ReportFinding, ScanReportDocument, parse_scan_report

router = APIRouter(include_in_schema=False)

PAGE_SIZE = 50
#: The start form's safety options: (field, label, help); bounds come from the API schema.
SAFETY_OPTIONS = (
    ("timeout", "Timeout per probe (s)", "0.05-30"),
    ("rate", "New connections per second", "0 = unlimited, at most 10000"),
    ("concurrency", "Connections at once", "1-4096"),
    ("host_concurrency", "Hosts at once", "1-256"),
    ("max_logins", "Login attempts per service", "0-100"),
    ("login_delay", "Pause between login attempts (s)", "0-10"),
)
CSV_COLUMNS = ("host", "device_id", "port", "protocol", "service", "check", "severity",
               "title", "evidence", "remediation", "references")
def _defaults() -> dict[str, Any]:
    return ScanStart(targets=["127.0.0.1"]).options.model_dump()


def _scans_page(request: Request, ctx: Ctx, principal: Any, *, form: dict[str, Any],
                error: str | None = None, status: int = 200,
                cursor: str | None = None) -> HTMLResponse:
    with ctx.db.read_session() as session:
        result = findings.list_scans(session, cursor=cursor, limit=PAGE_SIZE)
    return page(request, "scans.html", {
        "scans": result.scans, "form": form, "error": error, "options": SAFETY_OPTIONS,
        "next_url": "/scans?" + urlencode({"cursor": result.next_cursor})
        if result.next_cursor else None,
    }, principal=principal, status=status)


@router.get("/scans")
def scans(request: Request, ctx: Ctx, principal: DeviceReader,
          cursor: Annotated[str, Query(max_length=300)] = "") -> HTMLResponse:
    form = {"targets": "", "ports": "default", **_defaults()}
    try:
        return _scans_page(request, ctx, principal, form=form, cursor=cursor or None)
    except ValidationFailedError as exc:
        return _scans_page(request, ctx, principal, form=form, error=exc.message, status=422)


def _targets(text: str) -> list[str]:
    return [t for t in re.split(r"[\s,]+", text) if t]


@router.post("/scans")
def start_scan(
    request: Request, ctx: Ctx, principal: DeviceWriter,
    targets: Annotated[str, Form(max_length=20_000)] = "",
    ports: Annotated[str, Form(max_length=500)] = "default",
    timeout: Annotated[str, Form(max_length=20)] = "",
    rate: Annotated[str, Form(max_length=20)] = "",
    concurrency: Annotated[str, Form(max_length=20)] = "",
    host_concurrency: Annotated[str, Form(max_length=20)] = "",
    max_logins: Annotated[str, Form(max_length=20)] = "",
    login_delay: Annotated[str, Form(max_length=20)] = "",
    credentials: Annotated[str, Form(max_length=10)] = "",
) -> Response:
    """Start a server-side scan; 303 to its page, or the form again with the reason."""
    given = {"timeout": timeout, "rate": rate, "concurrency": concurrency,
             "host_concurrency": host_concurrency, "max_logins": max_logins,
             "login_delay": login_delay}
    options: dict[str, Any] = {k: v for k, v in given.items() if v.strip()}
    options["credentials"] = credentials == "on"
    form = {"targets": targets, "ports": ports, **given, "credentials": options["credentials"]}
    try:
        try:
            start = ScanStart.model_validate(
                {"targets": _targets(targets), "ports": ports.strip(), "options": options})
        except ValidationError as exc:
            first = exc.errors(include_url=False)[0]
            where = ".".join(str(p) for p in first.get("loc", ()) if p != "options")
            raise ValidationFailedError(f"{where}: {first.get('msg', 'invalid value')}",
                                        field=where) from None
        scan = ctx.scans.start_scan(actor=principal.actor, targets=start.targets,
                                    ports=start.ports, options=start.options.model_dump())
    except FleetError as exc:
        return _scans_page(request, ctx, principal, form=form, error=exc.message,
                           status=exc.http_status)
    return RedirectResponse(f"/scans/{scan.id}", status_code=303, headers=PAGE_HEADERS)


def _document(ctx: Ctx, scan: findings.Scan) -> ScanReportDocument | None:
    if scan.status is not findings.ScanStatus.FINISHED:
        return None
    with ctx.db.read_session() as session:
        return parse_scan_report(findings.scan_report(session, scan.id))


def _by_check(doc: ScanReportDocument) -> list[tuple[str, Severity, int, int]]:
    """(check, worst severity, findings, hosts), worst first."""
    groups: dict[str, list[ReportFinding]] = {}
    for f in doc.findings:
        groups.setdefault(f.check, []).append(f)
    rows = [(check, max((f.severity for f in fs), key=lambda s: s.rank), len(fs),
             len({f.host for f in fs})) for check, fs in groups.items()]
    return sorted(rows, key=lambda r: (-r[1].rank, r[0]))


@router.get("/scans/{scan_id}")
def scan_page(
    request: Request, scan_id: str, ctx: Ctx, principal: DeviceReader,
    view: Annotated[str, Query(max_length=10)] = "host",
    host: Annotated[str, Query(max_length=45)] = "",
    check: Annotated[str, Query(max_length=64)] = "",
) -> Response:
    try:
        with ctx.db.read_session() as session:
            scan = findings.get_scan(session, scan_id)
            hosts = findings.scan_hosts(session, scan.id)
        doc = _document(ctx, scan)
    except NotFoundError as exc:
        return not_found(request, principal, exc.message)
    view = "check" if view == "check" else "host"
    shown: list[ReportFinding] = []
    if doc is not None and (host or check):
        shown = [f for f in doc.findings
                 if (not host or f.host == host) and (not check or f.check == check)]
        shown.sort(key=lambda f: (-f.severity.rank, f.host, f.port, f.check))
    return page(request, "scan.html", {
        "scan": scan, "hosts": hosts, "doc": doc, "view": view, "host": host, "check": check,
        "checks": _by_check(doc) if doc else [], "shown": shown,
        "devices": {h.address: h.device_id for h in hosts if h.device_id},
    }, principal=principal)


def _download(name: str) -> dict[str, str]:
    return {**PAGE_HEADERS, "Content-Disposition": f'attachment; filename="{name}"'}


@router.get("/scans/{scan_id}/report.json")
def export_json(scan_id: str, request: Request, ctx: Ctx,
                principal: DeviceReader) -> Response:
    """The report document (fleetguard.scan/1) as stored, to download."""
    try:
        with ctx.db.read_session() as session:
            document: dict[str, Any] = findings.scan_report(session, scan_id)
            scan = findings.get_scan(session, scan_id)
    except NotFoundError as exc:
        return not_found(request, principal, exc.message)
    except FleetError as exc:
        return page(request, "error.html", {"title": "No report yet", "message": exc.message},
                    status=exc.http_status, principal=principal)
    return JSONResponse(document, headers=_download(f"fleetguard-scan-{scan.id}.json"))


@router.get("/scans/{scan_id}/findings.csv")
def export_csv(scan_id: str, request: Request, ctx: Ctx,
               principal: DeviceReader) -> Response:
    """The scan's findings, one per row, safe to open in a spreadsheet."""
    try:
        with ctx.db.read_session() as session:
            scan = findings.get_scan(session, scan_id)
            hosts = findings.scan_hosts(session, scan.id)
        doc = _document(ctx, scan)
    except NotFoundError as exc:
        return not_found(request, principal, exc.message)
    if doc is None:
        return page(request, "error.html", {
            "title": "No report yet", "message": f"scan {scan.id} is {scan.status.value}",
        }, status=409, principal=principal)
    devices = {h.address: h.device_id or "" for h in hosts}

    def rows() -> Iterator[str]:
        buf = io.StringIO()
        writer = csv.writer(buf)
        writer.writerow(CSV_COLUMNS)
        for f in doc.findings:
            writer.writerow([csv_cell(v) for v in (
                f.host, devices.get(f.host, ""), f.port, f.protocol, f.service, f.check,
                f.severity.value, f.title, f.evidence, f.remediation, "; ".join(f.references),
            )])
            if buf.tell() > 64_000:
                yield buf.getvalue()
                buf.seek(0)
                buf.truncate()
        yield buf.getvalue()

    return StreamingResponse(rows(), media_type="text/csv; charset=utf-8",
                             headers=_download(f"fleetguard-scan-{scan.id}-findings.csv"))


@router.get("/findings")
def findings_page(
    request: Request, ctx: Ctx, principal: DeviceReader,
    severity: Annotated[str, Query(max_length=10)] = "",
    check: Annotated[str, Query(max_length=64)] = "",
    state: Annotated[str, Query(max_length=10)] = "open",
    cursor: Annotated[str, Query(max_length=300)] = "",
) -> HTMLResponse:
    """Open (or resolved) findings across the fleet, worst first."""
    params = {k: v for k, v in {"severity": severity, "check": check, "state": state}.items()
              if v}
    rows: list[findings.Finding] = []
    next_cursor, error = None, None
    try:
        flt = FindingFilter(severity=optional_choice(Severity, severity, "severity"),
                            check=check or None,
                            state=optional_choice(FindingState, state, "state"))
        with ctx.db.read_session() as session:
            result = findings.list_findings(session, flt, cursor=cursor or None,
                                            limit=PAGE_SIZE)
        rows, next_cursor = result.findings, result.next_cursor
    except ValidationFailedError as exc:
        error = exc.message
    return page(request, "findings.html", {
        "findings": rows, "severity": severity, "check": check, "state": state,
        "error": error, "severities": [s.value for s in Severity],
        **page_links("/findings", params, cursor=cursor, next_cursor=next_cursor),
    }, principal=principal, status=422 if error else 200)


__all__ = ["router"]

