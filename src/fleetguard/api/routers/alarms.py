"""Alarms for operators: the queue (filtered, sorted, paged), one alarm, a device's alarms,
and triage (acknowledge, resolve, verdict). Every state change is in the audit log."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query

from fleetguard.api.authz import requires
from fleetguard.api.context import AppContext, get_context
from fleetguard.api.schemas_detect import (
    AlarmOut,
    AlarmPageOut,
    ResolveRequest,
    StateFilter,
    VerdictOut,
    VerdictRequest,
)
from fleetguard.api.schemas_detect import FeedbackOut as _FeedbackOut
from fleetguard.core.severity import Severity
from fleetguard.detect import Confidence, Family, RuleKind, triage
from fleetguard.detect.alarm_records import (
    AlarmFilter,
    AlarmSort,
    device_alarms,
    get_alarm,
    list_alarms,
)
from fleetguard.detect.alarms import OPEN_STATES, AlarmState
from fleetguard.operators import Permission, Principal
from fleetguard.registry import service as registry
from fleetguard.store.paging import MAX_PAGE

router = APIRouter(prefix="/api/v1", tags=["alarms"])
Ctx = Annotated[AppContext, Depends(get_context)]
Reader = Annotated[Principal, Depends(requires(Permission.ALARMS_READ))]
Triager = Annotated[Principal, Depends(requires(Permission.ALARMS_TRIAGE))]
Limit = Annotated[int, Query(ge=1, le=MAX_PAGE)]
Cursor = Annotated[str | None, Query(max_length=200, description="from the previous page")]
AlarmId = Annotated[int, Path(ge=1, le=2**31 - 1)]


def _states(state: StateFilter | None) -> frozenset[AlarmState] | None:
    if state is None:
        return None
    if state is StateFilter.OPEN:
        return OPEN_STATES
    return frozenset({AlarmState(state.value)})


@router.get("/alarms", summary="The alarm queue")
def alarms(
    ctx: Ctx, _: Reader,
    state: Annotated[StateFilter | None, Query(
        description="open (active and acknowledged), active, acknowledged or resolved")] = None,
    severity: Annotated[Severity | None, Query(description="at least this severe")] = None,
    confidence: Annotated[Confidence | None, Query(description="at least this sure")] = None,
    device: Annotated[str | None, Query(max_length=64, description="a device id")] = None,
    family: Family | None = None,
    kind: RuleKind | None = None,
    sort: Annotated[AlarmSort, Query(
        description="severity, confidence or last_seen (the latest report's collection "
                    "time), worst/surest/latest first")] = AlarmSort.SEVERITY,
    cursor: Cursor = None,
    limit: Limit = 50,
) -> AlarmPageOut:
    """Alarms matching every filter given, in ``sort`` order, newest alarm first among
    equals; a page at a time (``next_cursor``)."""
    flt = AlarmFilter(states=_states(state), severity=severity, confidence=confidence,
                      device_id=device, family=family, kind=kind)
    with ctx.db.session() as session:
        page = list_alarms(session, flt, sort=sort, cursor=cursor, limit=limit)
    return AlarmPageOut(alarms=[AlarmOut.of(a) for a in page.alarms],
                        next_cursor=page.next_cursor)


@router.get("/alarms/{alarm_id}", summary="One alarm, with what it saw and expected")
def alarm(alarm_id: AlarmId, ctx: Ctx, _: Reader) -> AlarmOut:
    with ctx.db.session() as session:
        return AlarmOut.of(get_alarm(session, alarm_id))


@router.post("/alarms/{alarm_id}/acknowledge", summary="Acknowledge an active alarm")
def acknowledge(alarm_id: AlarmId, ctx: Ctx, principal: Triager) -> AlarmOut:
    """Someone is on it. 409 ``alarm_state_conflict`` unless the alarm is active."""
    with ctx.db.session() as session:
        return AlarmOut.of(triage.acknowledge_alarm(session, alarm_id, actor=principal.actor))


@router.post("/alarms/{alarm_id}/resolve", summary="Resolve an open alarm")
def resolve(alarm_id: AlarmId, ctx: Ctx, principal: Triager,
            body: ResolveRequest | None = None) -> AlarmOut:
    """409 ``alarm_state_conflict`` if it is resolved already. If its cause fires again, a
    new alarm opens."""
    with ctx.db.session() as session:
        return AlarmOut.of(triage.resolve_alarm(session, alarm_id, actor=principal.actor,
                                                note=body.note if body else ""))


@router.post("/alarms/{alarm_id}/verdict", summary="True or false positive")
def verdict(alarm_id: AlarmId, body: VerdictRequest, ctx: Ctx, principal: Triager) -> VerdictOut:
    """A false positive resolves the alarm and changes what is flagged next on the device:
    an allow-list or first-seen alarm's destinations, listeners or binaries become allowed
    on it (until lifted: ``DELETE /api/v1/detection/feedback/{id}``); a threshold or
    learned rule is suppressed on it for ``suppress_for_s`` (default 24 hours)."""
    suppress = timedelta(seconds=body.suppress_for_s) if body.suppress_for_s else None
    with ctx.db.session() as session:
        alarm_now, feedback = triage.give_verdict(
            session, alarm_id, body.verdict, actor=principal.actor, note=body.note,
            suppress_for=suppress)
    return VerdictOut(alarm=AlarmOut.of(alarm_now),
                      feedback=[_FeedbackOut.of(f) for f in feedback])


@router.get("/devices/{device_id}/alarms", summary="A device's alarms, latest first")
def alarms_of_device(device_id: str, ctx: Ctx, _: Reader, cursor: Cursor = None,
                     limit: Limit = 50) -> AlarmPageOut:
    """404 for a device the registry does not hold."""
    with ctx.db.session() as session:
        device = registry.get_device(session, device_id)
        page = device_alarms(session, device.id, cursor=cursor, limit=limit)
    return AlarmPageOut(alarms=[AlarmOut.of(a) for a in page.alarms],
                        next_cursor=page.next_cursor)
