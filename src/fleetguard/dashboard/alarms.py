"""Alarms for the SOC analyst: the queue (filters, sorts, keyset pages, refreshed live),
one alarm with everything it explains, and triage (acknowledge, resolve, verdict) after a
confirmation, each through detect's triage service, which writes the audit entry.

The queue refreshes itself through htmx: the results poll their own URL with a stamp of
what they show, and the server answers 204 (nothing to swap) until the stamp changes.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Annotated
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Form, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy.orm import Session

from fleetguard.api.schemas import optional_choice
from fleetguard.core.errors import FleetError, NotFoundError, ValidationFailedError
from fleetguard.core.severity import Severity
from fleetguard.dashboard.charts import Chart, line_chart
from fleetguard.dashboard.deps import Ctx, not_found
from fleetguard.dashboard.render import page, page_links
from fleetguard.dashboard.security import PAGE_HEADERS, page_access
from fleetguard.detect import Confidence, Family, RuleKind, triage
from fleetguard.detect.alarm_records import (
    Alarm,
    AlarmFilter,
    AlarmSort,
    count_open_alarms,
    get_alarm,
    list_alarms,
)
from fleetguard.detect.alarms import NAMING_KINDS, OPEN_STATES, AlarmState, AlarmVerdict
from fleetguard.operators import Permission, Principal
from fleetguard.registry import DeviceFilter, listing
from fleetguard.registry import service as registry
from fleetguard.telemetry import Metric
from fleetguard.telemetry import queries as telemetry

router = APIRouter(include_in_schema=False)
AlarmReader = Annotated[Principal, Depends(page_access(Permission.ALARMS_READ))]
AlarmTriager = Annotated[Principal, Depends(page_access(Permission.ALARMS_TRIAGE))]

PAGE_SIZE = 50
POLL_SECONDS = 5
NAV_COUNT_CAP = 99  # the navigation's badge says "99+" beyond
# An open alarm weighs on the risk figure by its severity: more than a finding of the same
# severity (findings.RISK_WEIGHTS), because it is behaviour seen now, not a weakness.
ALARM_RISK_WEIGHTS: dict[Severity, int] = {
    Severity.CRITICAL: 60, Severity.HIGH: 30, Severity.MEDIUM: 12, Severity.LOW: 3,
    Severity.INFO: 0,
}
RISK_CAP = 100.0
CHART_MARGIN = timedelta(minutes=15)  # shown before and after the reports behind an alarm
MAX_CHART_SPAN = timedelta(days=2)
SUPPRESSION_CHOICES = {"1h": timedelta(hours=1), "24h": timedelta(hours=24),
                       "7d": timedelta(days=7), "30d": timedelta(days=30)}


class QueueState(StrEnum):
    """The queue's state filter: one state, every open one, or any."""

    ACTIVE = "active"
    OPEN = "open"
    ACKNOWLEDGED = "acknowledged"
    RESOLVED = "resolved"
    ANY = "any"


class TriageAction(StrEnum):
    ACKNOWLEDGE = "acknowledge"
    RESOLVE = "resolve"
    TRUE_POSITIVE = "true_positive"
    FALSE_POSITIVE = "false_positive"


ACTION_TEXT = {
    TriageAction.ACKNOWLEDGE: "Acknowledge the alarm: you are on it (it stays open)",
    TriageAction.RESOLVE: "Resolve the alarm (if its cause fires again, a new alarm opens)",
    TriageAction.TRUE_POSITIVE: "Mark the alarm a true positive (it stays as it is)",
    TriageAction.FALSE_POSITIVE: "Mark the alarm a false positive: it is resolved and "
                                 "detection learns from it",
}
# The queue's sortable columns: (header, order).
SORTABLE = {
    "severity": ("Severity", AlarmSort.SEVERITY),
    "confidence": ("Confidence", AlarmSort.CONFIDENCE),
    "last_seen": ("Last seen", AlarmSort.LAST_SEEN),
}
# The stored telemetry series behind each feature, for the charts of an alarm's reports.
FEATURE_METRICS = {
    "bytes_in_per_s": "bytes_in", "bytes_out_per_s": "bytes_out",
    "packets_in_per_s": "packets_in", "packets_out_per_s": "packets_out",
    "tcp_attempts_per_s": "tcp_attempts", "tcp_failures_per_s": "tcp_attempt_fails",
    "tcp_inbound_per_s": "tcp_inbound", "tcp_resets_per_s": "tcp_resets",
    "tcp_retransmits_per_s": "tcp_retransmits", "udp_in_per_s": "udp_in",
    "udp_out_per_s": "udp_out", "udp_no_port_per_s": "udp_no_port",
    "cpu_percent": "cpu_percent", "process_count": "process_count",
    "auth_failures": "auth_failures", "connections": "connections",
    "remote_addresses": "remote_peers", "new_remote_addresses": "remote_peers",
    "listeners_added": "listening_ports", "listeners_removed": "listening_ports",
    "new_executables": "new_executables", "top_process_cpu_percent": "cpu_percent",
}
FAMILY_METRICS = {  # what to chart for an alarm that names no feature
    Family.BACKDOOR_LISTENER: ("listening_ports",), Family.BEACON: ("connections",),
    Family.UNEXPECTED_EXECUTABLE: ("new_executables",), Family.MINER: ("cpu_percent",),
}


def unit_of(feature: str) -> str:
    if feature.endswith("_per_s"):
        return "per second"
    return "%" if feature.endswith("percent") else ""


# --- the figures the overview, the navigation and the device page show ------------------


@dataclass(frozen=True, slots=True)
class AlarmRisk:
    """Open alarms by severity and what they add to a risk figure (0-100)."""

    open_by_severity: list[tuple[Severity, int]]
    open_total: int
    points: int  # the sum of the open alarms' weights
    contribution: float  # points spread over the devices counted, capped


def alarm_risk(session: Session, *, devices: int, device_id: str | None = None) -> AlarmRisk:
    """Open alarms (fleet-wide or of one device) and their risk: the weights of
    :data:`ALARM_RISK_WEIGHTS` summed, divided by ``devices`` (the fleet figure is a mean
    over devices, as findings' is), capped at 100."""
    counts = count_open_alarms(session, device_id=device_id)
    points = sum(ALARM_RISK_WEIGHTS[s] * n for s, n in counts.items())
    contribution = min(RISK_CAP, points / devices) if devices > 0 else 0.0
    return AlarmRisk([(s, counts[s]) for s in Severity], sum(counts.values()), points,
                     round(contribution, 1))


def combined_risk(findings_score: float, alarms: AlarmRisk) -> float:
    return round(min(RISK_CAP, findings_score + alarms.contribution), 1)


def count_active(session: Session, cap: int = NAV_COUNT_CAP) -> tuple[int, bool]:
    """Active alarms, counted up to ``cap`` (one bounded page); True if there are more."""
    found = list_alarms(session, AlarmFilter(states=frozenset({AlarmState.ACTIVE})),
                        sort=AlarmSort.LAST_SEEN, limit=cap)
    return len(found.alarms), found.next_cursor is not None


def weights_text() -> str:
    return ", ".join(f"{s.value} {w}" for s, w in ALARM_RISK_WEIGHTS.items())


# --- the queue --------------------------------------------------------------------------


def _states(state: QueueState) -> frozenset[AlarmState] | None:
    if state is QueueState.ANY:
        return None
    if state is QueueState.OPEN:
        return OPEN_STATES
    return frozenset({AlarmState(state.value)})


@dataclass(frozen=True, slots=True)
class QueueQuery:
    state: QueueState
    flt: AlarmFilter
    sort: AlarmSort
    params: dict[str, str]  # the filters as given, for links (sort and cursor apart)


def _queue_query(state: str, severity: str, confidence: str, family: str, kind: str,
                 device: str, sort: str) -> QueueQuery:
    """Raises ValidationFailedError naming the filter that is not one of its choices."""
    chosen = optional_choice(QueueState, state, "state") or QueueState.ACTIVE
    flt = AlarmFilter(
        states=_states(chosen), severity=optional_choice(Severity, severity, "severity"),
        confidence=optional_choice(Confidence, confidence, "confidence"),
        family=optional_choice(Family, family, "family"),
        kind=optional_choice(RuleKind, kind, "kind"), device_id=device.strip() or None)
    order = optional_choice(AlarmSort, sort, "sort") or AlarmSort.SEVERITY
    params = {k: v for k, v in {"state": chosen.value, "severity": severity,
                                "confidence": confidence, "family": family, "kind": kind,
                                "device": device.strip()}.items() if v}
    return QueueQuery(chosen, flt, order, params)


def _stamp(alarms: list[Alarm], next_cursor: str | None) -> str:
    """What the results show, in a few characters: a change means a new render."""
    digest = hashlib.sha256(repr(next_cursor).encode())
    for a in alarms:
        digest.update(f"{a.id}:{a.state}:{a.severity}:{a.confidence}:{a.report_count}:"
                      f"{a.reports.last_seq}:{a.verdict}".encode())
    return digest.hexdigest()[:16]


def _sort_links(params: dict[str, str], sort: AlarmSort) -> dict[str, tuple[str, str, str]]:
    """Per column: (header, link to sort by it, aria-sort value). Every order is worst,
    surest or latest first."""
    return {key: (header, "/alarms?" + urlencode({**params, "sort": order.value}),
                  "descending" if order is sort else "none")
            for key, (header, order) in SORTABLE.items()}


def _device_names(session: Session, alarms: list[Alarm]) -> dict[str, str]:
    """The page's devices' names, in one query (a device gone shows its id)."""
    ids = frozenset(a.device_id for a in alarms)
    if not ids:
        return {}
    found = listing.browse_devices(session, DeviceFilter(device_ids=ids), limit=len(ids))
    return {d.id: d.name for d in found.devices}


@router.get("/alarms")
def alarm_queue(
    request: Request, ctx: Ctx, principal: AlarmReader,
    state: Annotated[str, Query(max_length=20)] = "",
    severity: Annotated[str, Query(max_length=20)] = "",
    confidence: Annotated[str, Query(max_length=20)] = "",
    family: Annotated[str, Query(max_length=40)] = "",
    kind: Annotated[str, Query(max_length=20)] = "",
    device: Annotated[str, Query(max_length=64)] = "",
    sort: Annotated[str, Query(max_length=20)] = "",
    cursor: Annotated[str, Query(max_length=300)] = "",
    known: Annotated[str, Query(max_length=32)] = "",
) -> Response:
    """The queue; ``known`` (the live refresh's stamp): 204 while nothing changed."""
    alarms: list[Alarm] = []
    next_cursor, error, names = None, None, {}
    query = QueueQuery(QueueState.ACTIVE, AlarmFilter(), AlarmSort.SEVERITY,
                       {"state": QueueState.ACTIVE.value})
    try:
        query = _queue_query(state, severity, confidence, family, kind, device, sort)
        with ctx.db.read_session() as session:
            found = list_alarms(session, query.flt, sort=query.sort, cursor=cursor or None,
                                limit=PAGE_SIZE)
            names = _device_names(session, found.alarms)
        alarms, next_cursor = found.alarms, found.next_cursor
    except ValidationFailedError as exc:
        error = exc.message
    stamp = _stamp(alarms, next_cursor)
    if known and known == stamp and error is None:
        return Response(status_code=204, headers=PAGE_HEADERS)
    params = {**query.params, **({"sort": query.sort.value}
                                 if query.sort is not AlarmSort.SEVERITY else {})}
    live = {**params, **({"cursor": cursor} if cursor else {}), "known": stamp}
    return page(request, "alarms.html", {
        "alarms": alarms, "names": names, "error": error, "f": query.params,
        "state": query.state.value, "sort": query.sort.value,
        "states": [s.value for s in QueueState], "severities": [s.value for s in Severity],
        "confidences": [c.value for c in Confidence], "families": [f.value for f in Family],
        "kinds": [k.value for k in RuleKind], "columns": _sort_links(query.params, query.sort),
        "live_url": "/alarms?" + urlencode(live), "poll_seconds": POLL_SECONDS,
        **page_links("/alarms", params, cursor=cursor, next_cursor=next_cursor),
    }, principal=principal, status=422 if error else 200)


@router.get("/alarms/count")
def active_count(request: Request, ctx: Ctx, principal: AlarmReader) -> HTMLResponse:
    """The navigation's badge: active alarms (fetched by htmx after the page loads)."""
    with ctx.db.read_session() as session:
        n, more = count_active(session)
    text = f"{n}+" if more else str(n)
    html = (f'<span class="nav-count{" none" if n == 0 else ""}">{text}'
            f'<span class="visually-hidden"> active</span></span>')
    return HTMLResponse(html, headers=PAGE_HEADERS)


# --- one alarm --------------------------------------------------------------------------


def _alarm_id(text: str) -> int | None:
    """An alarm id from the path: digits only, within the table's integer range."""
    if not text.isdigit() or len(text) > 10:
        return None
    value = int(text)
    return value if 1 <= value < 2**31 else None


def _action(text: str) -> TriageAction | None:
    return TriageAction(text) if text in {a.value for a in TriageAction} else None


def _ms(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


def _metrics_for(alarm: Alarm) -> list[Metric]:
    names = [FEATURE_METRICS[f] for f in alarm.features if f in FEATURE_METRICS]
    names += FAMILY_METRICS.get(alarm.family, ())
    out: list[Metric] = []
    for name in names:
        try:
            metric = Metric(name)
        except ValueError:  # a metric the telemetry store does not keep (yet)
            continue
        if metric not in out:
            out.append(metric)
    return out[:4]


def _report_charts(session: Session, alarm: Alarm) -> tuple[list[Chart], datetime, datetime]:
    """The device's stored series behind the alarm, over its reports and a margin."""
    start = _ms(alarm.reports.first_collected_ms) - CHART_MARGIN
    end = min(_ms(alarm.reports.last_collected_ms) + CHART_MARGIN, start + MAX_CHART_SPAN)
    charts = []
    for metric in _metrics_for(alarm):
        chart = line_chart(metric.value.replace("_", " "), "", telemetry.read_series(
            session, alarm.device_id, metric, since=start, until=end))
        if chart:
            charts.append(chart)
    return charts, start, end


def _allowed_actions(alarm: Alarm, principal: Principal) -> list[TriageAction]:
    if not principal.can(Permission.ALARMS_TRIAGE):
        return []
    actions = []
    if alarm.state is AlarmState.ACTIVE:
        actions.append(TriageAction.ACKNOWLEDGE)
    if alarm.open:
        actions.append(TriageAction.RESOLVE)
    if alarm.verdict is not AlarmVerdict.TRUE_POSITIVE:
        actions.append(TriageAction.TRUE_POSITIVE)
    if alarm.verdict is not AlarmVerdict.FALSE_POSITIVE:
        actions.append(TriageAction.FALSE_POSITIVE)
    return actions


def _alarm_context(session: Session, alarm: Alarm, principal: Principal) -> dict[str, object]:
    try:
        device_name = registry.get_device(session, alarm.device_id).name
    except NotFoundError:
        device_name = None
    charts, start, end = _report_charts(session, alarm)
    feedback = [f for f in triage.list_feedback(session, device_id=alarm.device_id,
                                                 in_force_only=False)
                if f.alarm_id == alarm.id]
    return {
        "alarm": alarm, "device_name": device_name, "charts": charts,
        "chart_start": start, "chart_end": end, "since": _ms(alarm.since_ms),
        "first_report_at": _ms(alarm.reports.first_collected_ms),
        "last_report_at": _ms(alarm.reports.last_collected_ms),
        "series_query": urlencode({"start": start.isoformat(), "end": end.isoformat()}),
        "metrics": _metrics_for(alarm), "units": {f: unit_of(f) for f in alarm.features},
        "actions": _allowed_actions(alarm, principal), "action_text": ACTION_TEXT,
        "feedback": feedback, "naming": alarm.kind in NAMING_KINDS,
        "margin_minutes": int(CHART_MARGIN.total_seconds() // 60),
    }


@router.get("/alarms/{alarm_id}")
def alarm_page(request: Request, alarm_id: str, ctx: Ctx, principal: AlarmReader) -> Response:
    ident = _alarm_id(alarm_id)
    if ident is None:
        return not_found(request, principal, f"no alarm {alarm_id[:20]!r}")
    with ctx.db.read_session() as session:
        try:
            alarm = get_alarm(session, ident)
        except NotFoundError as exc:
            return not_found(request, principal, exc.message)
        context = _alarm_context(session, alarm, principal)
    done = _action(request.query_params.get("done", ""))
    return page(request, "alarm.html", {**context, "done": done.value if done else None},
                principal=principal)


# --- triage -----------------------------------------------------------------------------


def _confirm(request: Request, principal: Principal, alarm: Alarm | None, alarm_id: int,
             action: TriageAction, *, error: str | None = None, status: int = 200,
             note: str = "") -> HTMLResponse:
    return page(request, "alarm_confirm.html", {
        "alarm": alarm, "alarm_id": alarm_id, "action": action.value,
        "text": ACTION_TEXT[action], "error": error, "note": note,
        "suppressions": list(SUPPRESSION_CHOICES), "max_note": triage.MAX_NOTE,
        "naming": alarm is not None and alarm.kind in NAMING_KINDS,
    }, principal=principal, status=status)


@router.get("/alarms/{alarm_id}/confirm/{action}")
def confirm_triage(request: Request, alarm_id: str, action: str, ctx: Ctx,
                   principal: AlarmTriager) -> Response:
    ident = _alarm_id(alarm_id)
    chosen = _action(action)
    if ident is None or chosen is None:
        return not_found(request, principal, f"no alarm action {action[:30]!r}")
    with ctx.db.read_session() as session:
        try:
            alarm = get_alarm(session, ident)
        except NotFoundError as exc:
            return not_found(request, principal, exc.message)
    return _confirm(request, principal, alarm, ident, chosen)


def _run(session: Session, alarm_id: int, action: TriageAction, actor: str, note: str,
         suppress: str) -> None:
    if action is TriageAction.ACKNOWLEDGE:
        triage.acknowledge_alarm(session, alarm_id, actor=actor)
    elif action is TriageAction.RESOLVE:
        triage.resolve_alarm(session, alarm_id, actor=actor, note=note)
    else:
        if suppress and suppress not in SUPPRESSION_CHOICES:
            raise ValidationFailedError("unknown suppression period", field="suppress_for")
        triage.give_verdict(session, alarm_id, AlarmVerdict(action.value), actor=actor,
                            note=note, suppress_for=SUPPRESSION_CHOICES.get(suppress))


@router.post("/alarms/{alarm_id}/actions/{action}")
def run_triage(
    request: Request, alarm_id: str, action: str, ctx: Ctx, principal: AlarmTriager,
    note: Annotated[str, Form(max_length=triage.MAX_NOTE)] = "",
    suppress_for: Annotated[str, Form(max_length=10)] = "",
) -> Response:
    """Through detect's triage service (it writes the audit entry); back to the alarm."""
    ident = _alarm_id(alarm_id)
    chosen = _action(action)
    if ident is None or chosen is None:
        return not_found(request, principal, f"no alarm action {action[:30]!r}")
    try:
        with ctx.db.session() as session:
            _run(session, ident, chosen, principal.actor, note.strip(), suppress_for)
    except NotFoundError as exc:
        return not_found(request, principal, exc.message)
    except FleetError as exc:
        with ctx.db.read_session() as session:
            current = get_alarm(session, ident)
        return _confirm(request, principal, current, ident, chosen, error=exc.message,
                        status=exc.http_status, note=note)
    return RedirectResponse(f"/alarms/{ident}?done={chosen.value}", status_code=303,
                            headers=PAGE_HEADERS)
