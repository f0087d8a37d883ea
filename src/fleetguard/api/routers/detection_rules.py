"""Detection rule sets for operators: the fleet's and each group's, versioned; dry runs;
diffs between versions; what false positives changed; the detection service's figures.

A device's effective rules are the fleet's plus its groups' (a group rule with the same
id replaces the fleet's; see docs/alarms.md). An activation is validated first (422
``ruleset_invalid`` naming the rule and field), becomes the scope's next version, is in
the audit log with its actor, and is in force from the device's next report.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Path, Query

from fleetguard.api.authz import requires
from fleetguard.api.context import AppContext, get_context
from fleetguard.api.schemas_detect import (
    DetectionStatusOut,
    DryRunOut,
    FeedbackOut,
    RuleSetDiffOut,
    RuleSetVersionOut,
    RuleSetVersionSummaryOut,
)
from fleetguard.detect import DEFAULT_RULESET_DOCUMENT, triage
from fleetguard.detect import rulesets as store
from fleetguard.detect.ruleset_merge import FLEET_SCOPE, diff_documents, group_scope
from fleetguard.operators import Permission, Principal

router = APIRouter(prefix="/api/v1/detection", tags=["detection rules"])
Ctx = Annotated[AppContext, Depends(get_context)]
Reader = Annotated[Principal, Depends(requires(Permission.ALARMS_READ))]
Writer = Annotated[Principal, Depends(requires(Permission.DETECTION_RULES_WRITE))]
Triager = Annotated[Principal, Depends(requires(Permission.ALARMS_TRIAGE))]
Version = Annotated[int, Path(ge=1, le=2**31 - 1)]
Group = Annotated[str, Path(min_length=1, max_length=100)]
ExpectedVersion = Annotated[int | None, Query(
    ge=1, le=2**31 - 1, description="the version this activation must become (409 "
                                    "ruleset_version_conflict if another came first)")]
Document = Annotated[dict[str, Any], Body(
    description="a rule set document: {name?, rules: [...]} (docs/detection.md); its "
                "version, if any, is replaced by the scope's next version",
    examples=[DEFAULT_RULESET_DOCUMENT])]


def _current(ctx: AppContext, scope: str) -> RuleSetVersionOut:
    with ctx.db.session() as session:
        return RuleSetVersionOut.of(store.get_ruleset_version(session, scope))


def _activate(ctx: AppContext, scope: str, document: dict[str, Any], actor: str,
              expected: int | None) -> RuleSetVersionOut:
    with ctx.db.session() as session:
        return RuleSetVersionOut.of(store.activate_ruleset(
            session, scope, document, actor=actor, expected_version=expected))


def _versions(ctx: AppContext, scope: str) -> list[RuleSetVersionSummaryOut]:
    with ctx.db.session() as session:
        return [RuleSetVersionSummaryOut.of(v) for v in store.list_ruleset_versions(session, scope)]


def _version(ctx: AppContext, scope: str, version: int) -> RuleSetVersionOut:
    with ctx.db.session() as session:
        return RuleSetVersionOut.of(store.get_ruleset_version(session, scope, version))


def _dry_run(ctx: AppContext, scope: str, document: dict[str, Any]) -> DryRunOut:
    with ctx.db.session() as session:
        return DryRunOut.of(store.dry_run(session, scope, document))


def _diff(ctx: AppContext, scope: str, before: int, after: int) -> RuleSetDiffOut:
    with ctx.db.session() as session:
        a = store.get_ruleset_version(session, scope, before)
        b = store.get_ruleset_version(session, scope, after)
    return RuleSetDiffOut(**diff_documents(a.document, b.document).to_dict())


# --- the fleet -------------------------------------------------------------------------


@router.get("/rulesets/fleet", summary="The fleet's rule set in force")
def fleet_ruleset(ctx: Ctx, _: Reader) -> RuleSetVersionOut:
    """Version 1 is the shipped default, in force until an operator activates one."""
    return _current(ctx, FLEET_SCOPE)


@router.put("/rulesets/fleet", summary="Activate a new fleet rule set")
def activate_fleet_ruleset(document: Document, ctx: Ctx, principal: Writer,
                           expected_version: ExpectedVersion = None) -> RuleSetVersionOut:
    return _activate(ctx, FLEET_SCOPE, document, principal.actor, expected_version)


@router.get("/rulesets/fleet/versions", summary="Every version of the fleet's rule set")
def fleet_versions(ctx: Ctx, _: Reader) -> list[RuleSetVersionSummaryOut]:
    return _versions(ctx, FLEET_SCOPE)


@router.get("/rulesets/fleet/versions/{version}", summary="One version of the fleet's rule set")
def fleet_version(version: Version, ctx: Ctx, _: Reader) -> RuleSetVersionOut:
    return _version(ctx, FLEET_SCOPE, version)


@router.get("/rulesets/fleet/diff", summary="What changed between two fleet versions")
def fleet_diff(ctx: Ctx, _: Reader,
               before: Annotated[int, Query(alias="from", ge=1, le=2**31 - 1)],
               after: Annotated[int, Query(alias="to", ge=1, le=2**31 - 1)]) -> RuleSetDiffOut:
    return _diff(ctx, FLEET_SCOPE, before, after)


@router.post("/rulesets/fleet/dry-run", summary="Validate a fleet rule set, say what changes")
def fleet_dry_run(document: Document, ctx: Ctx, _: Writer) -> DryRunOut:
    return _dry_run(ctx, FLEET_SCOPE, document)


# --- groups ----------------------------------------------------------------------------


@router.get("/rulesets/groups/{group}", summary="A group's rule set in force")
def group_ruleset(group: Group, ctx: Ctx, _: Reader) -> RuleSetVersionOut:
    """404 ``group_not_found``, or ``ruleset_version_not_found`` for a group with none."""
    return _current(ctx, group_scope(group))


@router.put("/rulesets/groups/{group}", summary="Activate a new rule set for a group")
def activate_group_ruleset(group: Group, document: Document, ctx: Ctx, principal: Writer,
                           expected_version: ExpectedVersion = None) -> RuleSetVersionOut:
    return _activate(ctx, group_scope(group), document, principal.actor, expected_version)


@router.get("/rulesets/groups/{group}/versions", summary="Every version of a group's rule set")
def group_versions(group: Group, ctx: Ctx, _: Reader) -> list[RuleSetVersionSummaryOut]:
    return _versions(ctx, group_scope(group))


@router.get("/rulesets/groups/{group}/versions/{version}",
            summary="One version of a group's rule set")
def group_version(group: Group, version: Version, ctx: Ctx, _: Reader) -> RuleSetVersionOut:
    return _version(ctx, group_scope(group), version)


@router.get("/rulesets/groups/{group}/diff", summary="What changed between two group versions")
def group_diff(group: Group, ctx: Ctx, _: Reader,
               before: Annotated[int, Query(alias="from", ge=1, le=2**31 - 1)],
               after: Annotated[int, Query(alias="to", ge=1, le=2**31 - 1)]) -> RuleSetDiffOut:
    return _diff(ctx, group_scope(group), before, after)


@router.post("/rulesets/groups/{group}/dry-run",
             summary="Validate a group rule set, say what changes")
def group_dry_run(group: Group, document: Document, ctx: Ctx, _: Writer) -> DryRunOut:
    return _dry_run(ctx, group_scope(group), document)


# --- feedback and status ---------------------------------------------------------------


@router.get("/feedback", summary="What false positives changed, in force")
def feedback(ctx: Ctx, _: Reader,
             device: Annotated[str | None, Query(max_length=64)] = None) -> list[FeedbackOut]:
    with ctx.db.session() as session:
        return [FeedbackOut.of(f) for f in triage.list_feedback(session, device_id=device)]


@router.delete("/feedback/{feedback_id}", summary="Lift an allowance or suppression")
def lift_feedback(feedback_id: Version, ctx: Ctx, principal: Triager) -> FeedbackOut:
    """From the device's next report, its subject or rule is flagged again."""
    with ctx.db.session() as session:
        return FeedbackOut.of(triage.lift_feedback(session, feedback_id, actor=principal.actor))


@router.get("/status", summary="The detection service's figures")
def status(ctx: Ctx, _: Reader) -> DetectionStatusOut:
    """Reports observed, processed and dropped (queue full), alarms opened, updated,
    resolved and held back by the rate limit. ``running`` false where this process runs
    no detection."""
    service = ctx.detection
    return DetectionStatusOut.of(service.stats() if service is not None else None)
