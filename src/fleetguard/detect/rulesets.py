"""Rule sets stored per scope (the fleet, a group), versioned, validated before activation.

Every activation is a new version of its scope (the document as validated, canonical JSON),
made the scope's head and written to the audit log with its actor. The fleet's version 1
is the shipped default (:data:`~fleetguard.detect.DEFAULT_RULESET_DOCUMENT`), in force until
an operator activates one; operators' fleet versions start at 2. A group has no rule set
until one is activated for it. How a device's rule sets merge: :mod:`ruleset_merge`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from fleetguard.auditlog import append_audit_entry
from fleetguard.core.clock import utcnow
from fleetguard.detect.alarm_errors import (
    RuleSetVersionConflictError,
    RuleSetVersionNotFoundError,
)
from fleetguard.detect.defaults import DEFAULT_RULESET_DOCUMENT, DEFAULT_RULESET_VERSION
from fleetguard.detect.models import RuleSetDocument, parse_ruleset
from fleetguard.detect.ruleset_merge import (
    FLEET_SCOPE,
    GROUP_PREFIX,
    RuleSetDiff,
    ScopedRuleSet,
    diff_documents,
)
from fleetguard.registry import groups as registry_groups
from fleetguard.registry.errors import GroupNotFoundError
from fleetguard.store.tables.detect import RuleSetHeadRow, RuleSetVersionRow

SHIPPED_BY = "fleetguard (shipped default)"


@dataclass(frozen=True, slots=True)
class RuleSetVersion:
    scope: str
    version: int
    document: dict[str, Any]  # as validated: every field spelled out
    activated_by: str
    activated_at: datetime | None  # None: the shipped default
    active: bool

    @property
    def rule_count(self) -> int:
        return len(self.document.get("rules", []))


@dataclass(frozen=True, slots=True)
class DryRun:
    """What activating a document would do: the version it would become, and the diff
    against the version in force."""

    scope: str
    current_version: int | None
    next_version: int
    diff: RuleSetDiff


def canonical_document(data: Any, version: int) -> dict[str, Any]:
    """The document validated (RuleSetInvalidError naming rule and field if not) and
    spelled out in full, with the scope's ``version``."""
    body = dict(data) if isinstance(data, Mapping) else data
    if isinstance(body, dict):
        body["version"] = version
    parse_ruleset(body)  # the error names the rule and field
    document: dict[str, Any] = RuleSetDocument.model_validate(body).model_dump(mode="json")
    return document


def _shipped() -> RuleSetVersion:
    document = canonical_document(DEFAULT_RULESET_DOCUMENT, DEFAULT_RULESET_VERSION)
    return RuleSetVersion(FLEET_SCOPE, DEFAULT_RULESET_VERSION, document, SHIPPED_BY, None,
                          active=False)


def check_scope(session: Session, scope: str) -> str:
    """``scope`` if it names the fleet or an existing group (GroupNotFoundError if not)."""
    if scope == FLEET_SCOPE:
        return scope
    group = scope.removeprefix(GROUP_PREFIX)
    if not scope.startswith(GROUP_PREFIX) or not any(
            g.name == group for g in registry_groups.list_groups(session)):
        raise GroupNotFoundError(f"no group {group[:100]!r}")
    return scope


def _head(session: Session, scope: str) -> int | None:
    return session.execute(
        select(RuleSetHeadRow.version).where(RuleSetHeadRow.scope == scope)
    ).scalar_one_or_none()


def _latest_version(session: Session, scope: str) -> int:
    stored = session.execute(
        select(func.max(RuleSetVersionRow.version)).where(RuleSetVersionRow.scope == scope)
    ).scalar_one_or_none()
    floor = DEFAULT_RULESET_VERSION if scope == FLEET_SCOPE else 0
    return max(int(stored or 0), floor)


def _to_version(row: RuleSetVersionRow, head: int | None) -> RuleSetVersion:
    return RuleSetVersion(row.scope, row.version, json.loads(row.document), row.activated_by,
                          row.activated_at, active=row.version == head)


def get_ruleset_version(session: Session, scope: str, version: int | None = None) -> RuleSetVersion:
    """One version of a scope's rule set; without ``version`` the one in force
    (RuleSetVersionNotFoundError for a group with none)."""
    check_scope(session, scope)
    head = _head(session, scope)
    wanted = version if version is not None else head
    if wanted is None and scope == FLEET_SCOPE:
        wanted = DEFAULT_RULESET_VERSION
    if scope == FLEET_SCOPE and wanted == DEFAULT_RULESET_VERSION:
        shipped = _shipped()
        return RuleSetVersion(**{**_fields(shipped), "active": head is None})
    row = session.execute(select(RuleSetVersionRow).where(
        RuleSetVersionRow.scope == scope, RuleSetVersionRow.version == wanted)
    ).scalar_one_or_none() if wanted is not None else None
    if row is None:
        what = f"version {wanted}" if wanted is not None else "rule set"
        raise RuleSetVersionNotFoundError(f"{scope} has no {what}")
    return _to_version(row, head)


def _fields(v: RuleSetVersion) -> dict[str, Any]:
    return {"scope": v.scope, "version": v.version, "document": v.document,
            "activated_by": v.activated_by, "activated_at": v.activated_at, "active": v.active}


def list_ruleset_versions(session: Session, scope: str) -> list[RuleSetVersion]:
    """Every version of a scope, newest first (the fleet's ends with the shipped default)."""
    check_scope(session, scope)
    head = _head(session, scope)
    rows = session.execute(select(RuleSetVersionRow).where(RuleSetVersionRow.scope == scope)
                           .order_by(RuleSetVersionRow.version.desc())).scalars()
    versions = [_to_version(row, head) for row in rows]
    if scope == FLEET_SCOPE:
        shipped = _shipped()
        versions.append(RuleSetVersion(**{**_fields(shipped), "active": head is None}))
    return versions


def _current_document(session: Session, scope: str) -> tuple[int | None, dict[str, Any]]:
    try:
        current = get_ruleset_version(session, scope)
    except RuleSetVersionNotFoundError:
        return None, {"rules": []}
    return current.version, current.document


def dry_run(session: Session, scope: str, data: Any) -> DryRun:
    """Validate ``data`` for ``scope`` and say what activating it would change."""
    check_scope(session, scope)
    next_version = _latest_version(session, scope) + 1
    document = canonical_document(data, next_version)
    current_version, current = _current_document(session, scope)
    return DryRun(scope, current_version, next_version, diff_documents(current, document))


def activate_ruleset(
    session: Session, scope: str, data: Any, *, actor: str, expected_version: int | None = None,
) -> RuleSetVersion:
    """Validate ``data`` and make it the scope's new version, in force from the next report.

    ``expected_version``: the version the caller means to create; another operator's
    activation in between is a RuleSetVersionConflictError rather than lost silently."""
    check_scope(session, scope)
    next_version = _latest_version(session, scope) + 1
    if expected_version is not None and expected_version != next_version:
        raise RuleSetVersionConflictError(
            f"{scope} would become version {next_version}, not {expected_version}: "
            "someone activated another version meanwhile")
    document = canonical_document(data, next_version)
    current_version, current = _current_document(session, scope)
    now = utcnow()
    session.add(RuleSetVersionRow(scope=scope, version=next_version,
                                  document=json.dumps(document, sort_keys=True),
                                  activated_by=actor, activated_at=now))
    head = session.get(RuleSetHeadRow, scope)
    if head is None:
        session.add(RuleSetHeadRow(scope=scope, version=next_version))
    else:
        head.version = next_version
    try:
        session.flush()
    except IntegrityError:  # another activation of the scope took this version first
        raise RuleSetVersionConflictError(
            f"{scope} version {next_version} was activated by someone else meanwhile"
        ) from None
    diff = diff_documents(current, document)
    append_audit_entry(session, actor=actor, action="detection.ruleset.activate",
                       target=f"ruleset:{scope}",
                       details={"version": next_version, "previous": current_version,
                                "added": list(diff.added), "removed": list(diff.removed),
                                "changed": [c.rule_id for c in diff.changed]})
    return RuleSetVersion(scope, next_version, document, actor, now, active=True)


def ruleset_heads(session: Session) -> dict[str, int]:
    """The version in force per scope that has one activated (the detection service polls
    this: a few rows)."""
    return {scope: int(version) for scope, version in session.execute(
        select(RuleSetHeadRow.scope, RuleSetHeadRow.version))}


def load_scoped_ruleset(session: Session, scope: str, version: int) -> ScopedRuleSet:
    """A stored version parsed (the fleet's shipped default when version 1)."""
    if scope == FLEET_SCOPE and version == DEFAULT_RULESET_VERSION:
        return ScopedRuleSet(scope, version, parse_ruleset(DEFAULT_RULESET_DOCUMENT))
    row = session.execute(select(RuleSetVersionRow.document).where(
        RuleSetVersionRow.scope == scope, RuleSetVersionRow.version == version)
    ).scalar_one_or_none()
    if row is None:
        raise RuleSetVersionNotFoundError(f"{scope} has no version {version}")
    return ScopedRuleSet(scope, version, parse_ruleset(json.loads(row)))


__all__ = [
    "SHIPPED_BY",
    "DryRun",
    "RuleSetVersion",
    "activate_ruleset",
    "canonical_document",
    "check_scope",
    "dry_run",
    "get_ruleset_version",
    "list_ruleset_versions",
    "load_scoped_ruleset",
    "ruleset_heads",
]
