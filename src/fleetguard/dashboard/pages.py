"""The dashboard's pages: the fleet overview, certificates and CA, audit log, operators.

Every figure comes from a domain service; nothing here reads tables directly. The
overview's figures each link to the filtered list behind them.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated
from urllib.parse import urlencode

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse

from fleetguard import auditlog, findings
from fleetguard.core.clock import utcnow
from fleetguard.dashboard.alarms import alarm_risk, combined_risk, weights_text
from fleetguard.dashboard.charts import line_chart
from fleetguard.dashboard.deps import AuditReader, Ctx, DeviceReader, OperatorsReader, Self
from fleetguard.dashboard.render import page
from fleetguard.identity import service as identity
from fleetguard.identity.errors import CaNotInitializedError
from fleetguard.operators import Permission
from fleetguard.operators import service as operators
from fleetguard.operators import tokens as api_tokens
from fleetguard.registry import DeviceState
from fleetguard.registry import service as registry
from fleetguard.telemetry import Sample
from fleetguard.telemetry import queries as telemetry

router = APIRouter(include_in_schema=False)

EXPIRY_WINDOW = timedelta(days=7)
CERT_SCAN_LIMIT = 500  # identity.list_certificates returns at most this many, newest first
RISK_HISTORY = timedelta(days=30)
# Weak devices on the overview: (check id, what the figure says).
WEAK_CHECKS = (
    ("default-credentials", "Devices with default credentials"),
    ("cleartext-protocol", "Devices with cleartext services"),
)


def _risk_trend(history: list[findings.RiskSnapshot], now: datetime,
                current: float) -> dict[str, object]:
    """The live figure against the stored ones of a day and a week ago, and the chart."""
    def stored_before(age: timedelta) -> findings.RiskSnapshot | None:
        older = [h for h in history if h.hour <= now - age]
        return older[-1] if older else None

    deltas = {}
    for label, age in (("24 h", timedelta(hours=24)), ("7 days", timedelta(days=7))):
        then = stored_before(age)
        deltas[label] = None if then is None else (then.score, round(current - then.score, 1))
    chart = line_chart("Fleet risk", "of 100", [Sample(at=h.hour, value=h.score)
                                                for h in history], ceiling=100.0)
    return {"deltas": deltas, "chart": chart, "stored": len(history)}


@router.get("/")
def overview(request: Request, ctx: Ctx, principal: Self) -> HTMLResponse:
    data: dict[str, object] = {}
    now = utcnow()
    with ctx.db.read_session() as session:
        if principal.can(Permission.DEVICES_READ):
            counts = registry.count_devices_by_state(session)
            data["states"] = [(s.value, counts[s]) for s in DeviceState]
            data["total"] = sum(counts.values())
            data["offline"] = telemetry.count_reporting_devices(session, online=False)
            data["expiring"] = identity.expiring_certificates(session, within=EXPIRY_WINDOW)
            data["shared"] = identity.shared_identity_alerts(session)
            data["severities"] = list(findings.count_findings_by_severity(session).items())
            data["weak"] = [(check, text, findings.count_devices_with_open_check(session, check))
                            for check, text in WEAK_CHECKS]
            risk = findings.fleet_risk(session, now=now)
            data["risk"] = risk
            data["trend"] = _risk_trend(
                findings.risk_history(session, since=now - RISK_HISTORY), now, risk.score)
            data["weights"] = list(findings.RISK_WEIGHTS.items())
            if principal.can(Permission.ALARMS_READ):
                alarms = alarm_risk(session, devices=risk.devices)
                data["alarms"] = alarms
                data["alarm_weights"] = weights_text()
                data["total_risk"] = combined_risk(risk.score, alarms)
        if principal.can(Permission.AUDIT_READ):
            data["events"] = auditlog.list_audit_entries(session, limit=10, newest_first=True)
    return page(request, "overview.html", data, principal=principal)


@router.get("/certificates")
def certificates(
    request: Request, ctx: Ctx, principal: DeviceReader,
    show: Annotated[str, Query(max_length=20)] = "all",
) -> HTMLResponse:
    ca_info: dict[str, object] | None = None
    ca_error = None
    with ctx.db.read_session() as session:
        certs = identity.list_certificates(session, limit=CERT_SCAN_LIMIT)
        expiring = identity.expiring_certificates(session, within=EXPIRY_WINDOW,
                                                 soonest=CERT_SCAN_LIMIT)
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
    shown: list[object]
    if show == "expiring":
        shown = list(expiring.soonest)
    elif show == "revoked":
        shown = [c for c in certs if c.revoked_at is not None]
    else:
        show, shown = "all", list(certs)
    return page(request, "certificates.html", {
        "certs": shown, "show": show, "scanned": len(certs),
        "truncated": len(certs) >= CERT_SCAN_LIMIT, "ca": ca_info, "ca_error": ca_error,
        "revoked_count": sum(1 for c in certs if c.revoked_at), "now": utcnow(),
        "expiring_count": expiring.count, "expiring_listed": len(expiring.soonest),
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
        tokens = (api_tokens.list_api_tokens(session)
                  if principal.can(Permission.TOKENS_ADMIN) else None)
    return page(request, "operators.html", {"operators": people, "tokens": tokens,
                                            "now": utcnow()}, principal=principal)
