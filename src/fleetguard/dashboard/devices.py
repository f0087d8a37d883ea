"""Devices: the list (search, filters, orders, keyset pages), one device with its findings,
its confirmed actions and the edit form.

Every figure comes from a domain service; nothing here reads tables directly.
"""

from __future__ import annotations

from datetime import timedelta
from enum import StrEnum
from typing import Annotated
from urllib.parse import urlencode

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from fleetguard import findings
from fleetguard.api.schemas import optional_choice
from fleetguard.core.clock import utcnow
from fleetguard.core.errors import FleetError, NotFoundError, ValidationFailedError
from fleetguard.core.severity import Severity
from fleetguard.dashboard.charts import device_charts
from fleetguard.dashboard.deps import Ctx, DeviceReader, DeviceWriter, not_found
from fleetguard.dashboard.render import page, page_links
from fleetguard.dashboard.security import PAGE_HEADERS
from fleetguard.dashboard.timeline import device_alarms_and_timeline
from fleetguard.findings import FindingFilter, FindingState
from fleetguard.identity import service as identity
from fleetguard.operators import Permission
from fleetguard.pki import RevocationReason
from fleetguard.registry import DeviceChanges, DeviceFilter, DeviceSort, DeviceState, listing
from fleetguard.registry import service as registry
from fleetguard.registry.models import ALLOWED_TRANSITIONS, parse_labels
from fleetguard.telemetry import queries as telemetry

router = APIRouter(include_in_schema=False)

PAGE_SIZE = 50
FINDINGS_SHOWN = 200
CHART_WINDOW = timedelta(hours=24)
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
# The list's sortable columns: (header, ascending order, descending order).
SORTABLE = {
    "name": ("Name", DeviceSort.NAME, DeviceSort.NAME_DESC),
    "state": ("State", DeviceSort.STATE, DeviceSort.STATE_DESC),
    "registered": ("Registered", DeviceSort.REGISTERED, DeviceSort.REGISTERED_DESC),
}
CHECK_NAMES = {
    "default-credentials": "default credentials",
    "cleartext-protocol": "cleartext services",
    "no-authentication": "no authentication",
    "snmp-default-community": "SNMP default community",
}


class Online(StrEnum):
    ONLINE = "online"
    OFFLINE = "offline"


def _only(a: frozenset[str] | None, b: frozenset[str]) -> frozenset[str]:
    return b if a is None else a & b


def _sort_links(params: dict[str, str], sort: DeviceSort) -> dict[str, tuple[str, str, str]]:
    """Per column: (header, link to sort by it, aria-sort value)."""
    out = {}
    for key, (header, up, down) in SORTABLE.items():
        nxt = down if sort is up else up
        aria = "ascending" if sort is up else "descending" if sort is down else "none"
        out[key] = (header, "/devices?" + urlencode({**params, "sort": nxt.value}), aria)
    return out


@router.get("/devices")
def devices(
    request: Request, ctx: Ctx, principal: DeviceReader,
    q: Annotated[str, Query(max_length=100)] = "",
    state: Annotated[str, Query(max_length=20)] = "",
    labels: Annotated[str, Query(max_length=500)] = "",
    online: Annotated[str, Query(max_length=10)] = "",
    check: Annotated[str, Query(max_length=64)] = "",
    severity: Annotated[str, Query(max_length=10)] = "",
    sort: Annotated[str, Query(max_length=20)] = "name",
    cursor: Annotated[str, Query(max_length=300)] = "",
) -> HTMLResponse:
    params = {k: v for k, v in {"q": q, "state": state, "labels": labels, "online": online,
                                "check": check, "severity": severity}.items() if v}
    rows, next_cursor, error = [], None, None
    order = DeviceSort.NAME
    try:
        order = optional_choice(DeviceSort, sort, "sort") or DeviceSort.NAME
        state_value = optional_choice(DeviceState, state, "state")
        online_value = optional_choice(Online, online, "online")
        min_severity = optional_choice(Severity, severity, "severity")
        with ctx.db.read_session() as session:
            ids: frozenset[str] | None = None
            if online_value is not None:
                ids = telemetry.reporting_device_ids(session,
                                                     online=online_value is Online.ONLINE)
            if check or min_severity is not None:
                ids = _only(ids, findings.open_finding_device_ids(
                    session, check=check or None, min_severity=min_severity))
            flt = DeviceFilter(state=state_value, search=q.strip() or None,
                               label_query=labels.strip() or None, device_ids=ids)
            result = listing.browse_devices(session, flt, sort=order, cursor=cursor or None,
                                            limit=PAGE_SIZE)
        rows, next_cursor = result.devices, result.next_cursor
    except ValidationFailedError as exc:
        error = exc.message
    if order is not DeviceSort.NAME:
        params["sort"] = order.value
    unsorted = {k: v for k, v in params.items() if k != "sort"}
    return page(request, "devices.html", {
        "devices": rows, "q": q, "state": state, "labels": labels, "online": online,
        "check": check, "severity": severity, "error": error, "sort": order.value,
        "states": [s.value for s in DeviceState], "severities": [s.value for s in Severity],
        "checks": CHECK_NAMES, "columns": _sort_links(unsorted, order),
        **page_links("/devices", params, cursor=cursor, next_cursor=next_cursor),
    }, principal=principal, status=422 if error else 200)


def _findings_of(ctx: Ctx, device_id: str, state: FindingState) -> list[findings.Finding]:
    with ctx.db.read_session() as session:
        return findings.list_findings(
            session, FindingFilter(device_id=device_id, state=state), limit=FINDINGS_SHOWN
        ).findings


@router.get("/devices/{device_id}")
def device_page(request: Request, device_id: str, ctx: Ctx, principal: DeviceReader) -> Response:
    with ctx.db.read_session() as session:
        try:
            device = registry.get_device(session, device_id)
        except NotFoundError as exc:
            return not_found(request, principal, exc.message)
        certs = identity.list_certificates(session, device_id=device.id)
        status = telemetry.device_status(session, device.id)
        snapshot = telemetry.latest_snapshot(session, device.id)
        alarms = device_alarms_and_timeline(
            session, device.id, can_read_audit=principal.can(Permission.AUDIT_READ)
        ) if principal.can(Permission.ALARMS_READ) else None
        # Every stored metric, with axes and units (a learned band is not drawn yet).
        metric_charts = device_charts(session, device.id, end=utcnow(), window=CHART_WINDOW)
    transitions = sorted(
        name for name, target in STATE_ACTIONS.items()
        if target in ALLOWED_TRANSITIONS[device.state]
    )
    if DeviceState.DECOMMISSIONED in ALLOWED_TRANSITIONS[device.state]:
        transitions.append("decommission")
    return page(request, "device.html", {
        "device": device, "certs": certs, "status": status, "snapshot": snapshot,
        "device_charts": metric_charts, "transitions": transitions,
        "done": request.query_params.get("done"),
        "now": utcnow(), "open_findings": _findings_of(ctx, device.id, FindingState.OPEN),
        "resolved_findings": _findings_of(ctx, device.id, FindingState.RESOLVED),
        "findings_shown": FINDINGS_SHOWN, "device_alarms": alarms,
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
        return not_found(request, principal, f"no action {action!r}")
    with ctx.db.read_session() as session:
        try:
            device = registry.get_device(session, device_id)
        except NotFoundError as exc:
            return not_found(request, principal, exc.message)
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
        return not_found(request, principal, f"no action {action!r}")
    try:
        with ctx.db.session() as session:
            device = registry.get_device(session, device_id)
            if action in STATE_ACTIONS:
                registry.set_device_state(session, device.id, STATE_ACTIONS[action],
                                          actor=principal.actor, reason=reason)
            elif action == "decommission":
                ctx.decommission(session, ctx.fleet_ca(), device_id=device.id,
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
        return not_found(request, principal, exc.message)
    except FleetError as exc:
        return page(request, "confirm.html", {
            "device": None, "error": exc.message,
            **_confirm_context(action, device_id, serial),
        }, principal=principal, status=exc.http_status)
    return RedirectResponse(f"/devices/{device.id}?done={action}", status_code=303,
                            headers=PAGE_HEADERS)


def _labels_text(labels: dict[str, str]) -> str:
    return "\n".join(f"{k}={v}" for k, v in sorted(labels.items()))


@router.get("/devices/{device_id}/edit")
def edit_form(request: Request, device_id: str, ctx: Ctx, principal: DeviceWriter) -> Response:
    with ctx.db.read_session() as session:
        try:
            device = registry.get_device(session, device_id)
        except NotFoundError as exc:
            return not_found(request, principal, exc.message)
    return page(request, "edit.html", {"device": device, "name": device.name,
                                       "labels": _labels_text(device.labels)},
                principal=principal)


@router.post("/devices/{device_id}/edit")
def edit_device(
    request: Request, device_id: str, ctx: Ctx, principal: DeviceWriter,
    name: Annotated[str, Form(max_length=200)] = "",
    labels: Annotated[str, Form(max_length=20_000)] = "",
) -> Response:
    """Name and labels, through the registry (validated, audited as device.update)."""
    try:
        with ctx.db.session() as session:
            device = registry.update_device(
                session, device_id,
                DeviceChanges(name=name, labels=parse_labels(labels.splitlines())),
                actor=principal.actor,
            )
    except NotFoundError as exc:
        return not_found(request, principal, exc.message)
    except FleetError as exc:
        with ctx.db.read_session() as session:
            current = registry.get_device(session, device_id)
        return page(request, "edit.html", {"device": current, "name": name, "labels": labels,
                                           "error": exc.message},
                    principal=principal, status=exc.http_status)
    return RedirectResponse(f"/devices/{device.id}?done=edit", status_code=303,
                            headers=PAGE_HEADERS)
