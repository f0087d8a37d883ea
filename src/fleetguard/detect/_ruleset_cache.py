"""Parsed rule sets in force, and each combination of groups merged, for the service.

Refreshed at the start of every batch from the scopes' heads (a few rows): an activation
committed before a report is processed is in force for that report.
"""

from __future__ import annotations

from sqlalchemy.orm import Session

from fleetguard.detect.defaults import DEFAULT_RULESET_VERSION
from fleetguard.detect.rules import RuleSet
from fleetguard.detect.ruleset_merge import FLEET_SCOPE, ScopedRuleSet, group_scope, merge_rulesets
from fleetguard.detect.rulesets import load_scoped_ruleset, ruleset_heads


class RuleSetCache:
    def __init__(self) -> None:
        self._heads: dict[str, int] | None = None
        self._scoped: dict[str, ScopedRuleSet] = {}
        self._merged: dict[tuple[str, ...], RuleSet] = {}

    def refresh(self, session: Session) -> bool:
        """Re-read the heads; True if a rule set changed (parsed again, merges forgotten)."""
        heads = ruleset_heads(session)
        heads.setdefault(FLEET_SCOPE, DEFAULT_RULESET_VERSION)
        if heads == self._heads:
            return False
        scoped = {}
        for scope, version in heads.items():
            known = self._scoped.get(scope)
            scoped[scope] = (known if known is not None and known.version == version
                             else load_scoped_ruleset(session, scope, version))
        self._heads, self._scoped, self._merged = heads, scoped, {}
        return True

    @property
    def fleet_version(self) -> int:
        return self._scoped[FLEET_SCOPE].version

    def for_groups(self, groups: tuple[str, ...]) -> RuleSet:
        """The effective rule set of a device in ``groups`` (refresh() must have run)."""
        scopes = tuple(s for s in (group_scope(g) for g in groups) if s in self._scoped)
        merged = self._merged.get(scopes)
        if merged is None:
            merged = merge_rulesets(self._scoped[FLEET_SCOPE],
                                    [self._scoped[s] for s in scopes])
            self._merged[scopes] = merged
        return merged


__all__ = ["RuleSetCache"]
