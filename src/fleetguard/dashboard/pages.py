"""The dashboard's pages: overview, devices, one device, certificates and CA, audit, operators.

Every figure comes from a domain service; nothing here reads tables directly.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Annotated
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Form, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from fleetguard import auditlog
from fleetguard.api.context import AppContext, get_context
from fleetguard.core.clock import utcnow
from fleetguard.core.errors import FleetError, NotFoundError, ValidationFailedError
from fleetguard.dashboard.charts import Chart, line_chart
from fleetguard.dashboard.render import page
from fleetguard.dashboard.security import PAGE_HEADERS, page_access
from fleetguard.identity import DeviceCertificate
from fleetguard.identity import service as identity
from fleetguard.identity.errors import CaNotInitializedError
from fleetguard.operators import Permission, Principal
from fleetguard.operators import service as operators
from fleetguard.pki import RevocationReason
from fleetguard.registry import DeviceFilter, DeviceState
from fleetguard.registry import service as registry
from fleetguard.registry.models import ALLOWED_TRANSITIONS
from fleetguard.telemetry import Metric
from fleetguard.telemetry import service as telemetry

router = APIRouter(include_in_schema=False)
Ctx = Annotated[AppContext, Depends(get_context)]
Self = Annotated[Principal, Depends(page_access(Permission.SELF))]
DeviceReader = Annotated[Principal, Depends(page_access(Permission.DEVICES_READ))]
DeviceWriter = Annotated[Principal, Depends(page_access(Permission.DEVICES_WRITE))]
AuditReader = Annotated[Principal, Depends(page_access(Permission.AUDIT_READ))]
OperatorsReader = Annotated[Principal, Depends(page_access(Permission.OPERATORS_READ))]

EXPIRY_WINDOW = timedelta(days=7)
CERT_SCAN_LIMIT = 500  # identity.list_certificates returns at most this many, newest first
PAGE_SIZE = 50
CHART_WINDOW = timedelta(hours=24)
CHARTS = (
    (Metric.BYTES_IN, "Bytes in", "bytes"),
    (Metric.BYTES_OUT, "Bytes out", "bytes"),
    (Metric.CONNECTIONS, "Established connections", "connections"),
    (Metric.LISTENING_PORTS, "Listening ports", "ports"),
)
STATE_ACTIONS = {
    "activate": DeviceState.ACTIVE,
    "suspend": DeviceState.SUSPENDED,
    "quarantine": DeviceState.QUARANTINED,
}
ACTION_TEXT = {
    "activate": "Activate the device (its certificate opens the channel again)",
    "suspend": "Suspend the device (its certificate stops opening the channel)",
    "quarantine": "Quarantine the device (cut off from the channel until released)",
    "decommission": "Decommission the device: final; every certificate is revoked",
    "revoke": "Revoke this certificate: the device is cut off at its next request",
}


@dataclass(frozen=True, slots=True)
class Expiring:
    certificates: list[DeviceCertificate]
    scanned: int
    truncated: bool


def _expiring(certs: list[DeviceCertificate]) -> Expiring:
    now = utcnow()
    soon = [c for c in certs
            if c.revoked_at is None and now <= c.not_after <= now + EXPIRY_WINDOW]
    soon.sort(key=lambda c: c.not_after)
    return Expiring(soon, len(certs), len(certs) >= CERT_SCAN_LIMIT)


def _not_found(request: Request, principal: Principal, message: str) -> HTMLResponse:
    return page(request, "error.html", {"title": "Not found", "message": message},
                status=404, principal=principal)


@router.get("/")
def overview(request: Request, ctx: Ctx, principal: Self) -> HTMLResponse:
    data: dict[str, object] = {}
    with ctx.db.session() as session:
        if principal.can(Permission.DEVICES_READ):
            counts = registry.count_devices_by_state(session)
            data["states"] = [(s.value, counts[s]) for s in DeviceState]
            data["total"] = sum(counts.values())
            data["expiring"] = _expiring(
                identity.list_certificates(session, limit=CERT_SCAN_LIMIT))
            data["shared"] = identity.shared_identity_alerts(session)
        if principal.can(Permission.AUDIT_READ):
            data["events"] = auditlog.list_audit_entries(session, limit=10, newest_first=True)
    return page(request, "overview.html", data, principal=principal)


@router.get("/devices")
def devices(
    request: Request, ctx: Ctx, principal: DeviceReader,
    q: Annotated[str, Query(max_length=100)] = "",
    state: Annotated[str, Query(max_length=20)] = "",
    labels: Annotated[str, Query(max_length=500)] = "",
    cursor: Annotated[str, Query(max_length=200)] = "",
) -> HTMLResponse:
    error = None
    state_value = DeviceState(state) if state in {s.value for s in DeviceState} else None
    flt = DeviceFilter(state=state_value, search=q.strip() or None,
                       label_query=labels.strip() or None)
    params = {k: v for k, v in {"q": q, "state": state, "labels": labels}.items() if v}
    try:
        with ctx.db.session() as session:
            result = registry.list_devices(session, flt, cursor=cursor or None, limit=PAGE_SIZE)
        rows, next_cursor = result.devices, result.next_cursor
    except ValidationFailedError as exc:
        rows, next_cursor, error = [], None, exc.message
    next_url = "/devices?" + urlencode({**params, "cursor": next_cursor}) if next_cursor else None
    first_url = "/devices?" + urlencode(params) if cursor else None
    return page(request, "devices.html", {
        "devices": rows, "q": q, "state": state, "labels": labels, "error": error,
        "states": [s.value for s in DeviceState], "next_url": next_url, "first_url": first_url,
    }, principal=principal, status=422 if error else 200)


@router.get("/devices/{device_id}")
def device_page(request: Request, device_id: str, ctx: Ctx, principal: DeviceReader) -> Response:
    since = utcnow() - CHART_WINDOW
    with ctx.db.session() as session:
        try:
            device = registry.get_device(session, device_id)
        except NotFoundError as exc:
            return _not_found(request, principal, exc.message)
        certs = identity.list_certificates(session, device_id=device.id)
        status = telemetry.device_status(session, device.id)
        snapshot = telemetry.latest_snapshot(session, device.id)
        charts: list[Chart] = []
        for metric, title, unit in CHARTS:
            chart = line_chart(title, unit, telemetry.read_series(
                session, device.id, metric, since=since))
            if chart:
                charts.append(chart)
    transitions = sorted(
        name for name, target in STATE_ACTIONS.items()
        if target in ALLOWED_TRANSITIONS[device.state]
    )
    if DeviceState.DECOMMISSIONED in ALLOWED_TRANSITIONS[device.state]:
        transitions.append("decommission")
    return page(request, "device.html", {
        "device": device, "certs": certs, "status": status, "snapshot": snapshot,
        "charts": charts, "transitions": transitions, "done": request.query_params.get("done"),
        "now": utcnow(),
    }, principal=principal)


def _confirm_context(action: str, device_id: str, serial: str) -> dict[str, object]:
    return {
        "action": action, "device_id": device_id, "serial": serial,
        "text": ACTION_TEXT[action], "reasons": [r.value for r in RevocationReason],
    }


@router.get("/devices/{device_id}/confirm/{action}")
def confirm_action(
    request: Request, device_id: str, action: str, ctx: Ctx, principal: DeviceWriter,
    serial: Annotated[str, Query(max_length=64)] = "",
) -> HTMLResponse:
    if action not in ACTION_TEXT or (action == "revoke" and not serial):
        return _not_found(request, principal, f"no action {action!r}")
    with ctx.db.session() as session:
        try:
            device = registry.get_device(session, device_id)
        except NotFoundError as exc:
            return _not_found(request, principal, exc.message)
    return page(request, "confirm.html", {"device": device,
                                          **_confirm_context(action, device.id, serial)},
                principal=principal)


@router.post("/devices/{device_id}/actions/{action}")
def run_action(
    request: Request, device_id: str, action: str, ctx: Ctx, principal: DeviceWriter,
    reason: Annotated[str, Form(max_length=500)] = "",
    serial: Annotated[str, Form(max_length=64)] = "",
    revocation_reason: Annotated[str, Form(max_length=40)] = "unspecified",
) -> Response:
    if action not in ACTION_TEXT:
        return _not_found(request, principal, f"no action {action!r}")
    try:
        with ctx.db.session() as session:
            device = registry.get_device(session, device_id)
            if action in STATE_ACTIONS:
                registry.set_device_state(session, device.id, STATE_ACTIONS[action],
                                          actor=principal.actor, reason=reason)
            elif action == "decommission":
                identity.decommission_device(session, ctx.fleet_ca(), device_id=device.id,
                                             actor=principal.actor, reason=reason)
            else:
                if serial not in {c.serial_hex for c in
                                  identity.list_certificates(session, device_id=device.id)}:
                    raise ValidationFailedError("that certificate is not this device's",
                                                field="serial")
                try:
                    why = RevocationReason(revocation_reason)
                except ValueError as exc:
                    raise ValidationFailedError("unknown revocation reason",
                                                field="reason") from exc
                identity.revoke_certificate(session, ctx.fleet_ca(), serial_hex=serial,
                                            actor=principal.actor, reason=why)
    except NotFoundError as exc:
        return _not_found(request, principal, exc.message)
    except FleetError as exc:
        return page(request, "confirm.html", {
            "device": None, "error": exc.message,
            **_confirm_context(action, device_id, serial),
        }, principal=principal, status=exc.http_status)
    return RedirectResponse(f"/devices/{device.id}?done={action}", status_code=303,
                            headers=PAGE_HEADERS)


@router.get("/certificates")
def certificates(
    request: Request, ctx: Ctx, principal: DeviceReader,
    show: Annotated[str, Query(max_length=20)] = "all",
) -> HTMLResponse:
    ca_info: dict[str, object] | None = None
    ca_error = None
    with ctx.db.session() as session:
        certs = identity.list_certificates(session, limit=CERT_SCAN_LIMIT)
    try:
        ca = ctx.fleet_ca()
        ca_info = {
            "fleet_name": ca.fleet_name, "root_fingerprint": ca.root_fingerprint,
            "root_not_after": ca.root.certificate.not_valid_after_utc,
            "issuing": [(i.ca_id, i.status.value if i.status else "",
                         i.certificate.not_valid_after_utc) for i in ca.issuing_cas],
            "crl_next_update": identity.crl_next_update(ca),
        }
    except CaNotInitializedError as exc:
        ca_error = exc.message
    expiring = _expiring(certs)
    if show == "expiring":
        shown = expiring.certificates
    elif show == "revoked":
        shown = [c for c in certs if c.revoked_at is not None]
    else:
        show, shown = "all", certs
    return page(request, "certificates.html", {
        "certs": shown, "show": show, "scanned": len(certs),
        "truncated": len(certs) >= CERT_SCAN_LIMIT, "ca": ca_info, "ca_error": ca_error,
        "revoked_count": sum(1 for c in certs if c.revoked_at), "now": utcnow(),
        "expiring_count": len(expiring.certificates),
    }, principal=principal)


@router.get("/audit")
def audit(
    request: Request, ctx: Ctx, principal: AuditReader,
    before: Annotated[int, Query(ge=0)] = 0,
    action: Annotated[str, Query(max_length=100)] = "",
) -> HTMLResponse:
    limit = 50
    with ctx.db.session() as session:
        entries = auditlog.list_audit_entries(
            session, after_seq=before, limit=limit, action=action or None, newest_first=True
        )
        verification = auditlog.verify_chain(session)
    older = None
    if len(entries) == limit and entries[-1].seq > 1:
        older = "/audit?" + urlencode({k: v for k, v in
                                       {"before": entries[-1].seq, "action": action}.items() if v})
    return page(request, "audit.html", {
        "entries": entries, "verification": verification, "action": action, "older": older,
        "newest_url": "/audit?" + urlencode({"action": action} if action else {}) if before
        else None,
    }, principal=principal)


@router.get("/operators")
def operators_page(request: Request, ctx: Ctx, principal: OperatorsReader) -> HTMLResponse:
    with ctx.db.session() as session:
        people = operators.list_operators(session)
        tokens = (operators.list_api_tokens(session)
                  if principal.can(Permission.TOKENS_ADMIN) else None)
    return page(request, "operators.html", {"operators": people, "tokens": tokens,
                                            "now": utcnow()}, principal=principal)
