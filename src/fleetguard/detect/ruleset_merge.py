"""A device's effective rule set, and what changes between two rule set documents. Pure.

**The merge rule.** A device's rules are the fleet's rule set (the shipped default until an
operator activates one) plus the rule sets of the groups it belongs to, taken in group
name order: a group rule whose id is already in the set *replaces* that rule in place (so
a group can loosen or tighten a fleet rule by reusing its id), a new id is *added* after
the fleet's rules. Two groups with the same rule id: the group whose name sorts last wins.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from fleetguard.detect.rules import Rule, RuleSet

FLEET_SCOPE = "fleet"
GROUP_PREFIX = "group:"


def group_scope(group: str) -> str:
    return f"{GROUP_PREFIX}{group}"


@dataclass(frozen=True, slots=True)
class ScopedRuleSet:
    """A scope's rule set in force: which scope, which version, the parsed rules."""

    scope: str
    version: int
    ruleset: RuleSet


def merge_rulesets(fleet: ScopedRuleSet, groups: Sequence[ScopedRuleSet]) -> RuleSet:
    """The effective rule set of a device in ``groups`` (see the module docstring)."""
    if not groups:
        return fleet.ruleset
    rules: dict[str, Rule] = {rule.id: rule for rule in fleet.ruleset.rules}
    names = [f"{fleet.scope} v{fleet.version}"]
    for group in sorted(groups, key=lambda g: g.scope):
        names.append(f"{group.scope} v{group.version}")
        for rule in group.ruleset.rules:
            rules[rule.id] = rule  # same id: replaced where it stood; new: appended
    return RuleSet(version=fleet.version, rules=tuple(rules.values()), name=" + ".join(names))


# --- diff ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RuleChange:
    rule_id: str
    fields: Mapping[str, tuple[Any, Any]]  # field -> (before, after)


@dataclass(frozen=True, slots=True)
class RuleSetDiff:
    added: tuple[str, ...]
    removed: tuple[str, ...]
    changed: tuple[RuleChange, ...]
    name: tuple[str, str] | None = None  # (before, after) when the name changed

    @property
    def empty(self) -> bool:
        return not (self.added or self.removed or self.changed or self.name)

    def to_dict(self) -> dict[str, Any]:
        return {
            "added": list(self.added), "removed": list(self.removed),
            "changed": [{"rule_id": c.rule_id,
                         "fields": {k: {"before": b, "after": a}
                                    for k, (b, a) in c.fields.items()}}
                        for c in self.changed],
            "name": ({"before": self.name[0], "after": self.name[1]}
                     if self.name is not None else None),
        }


def _rules_by_id(document: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    return {str(rule["id"]): rule for rule in document.get("rules", [])}


def diff_documents(before: Mapping[str, Any], after: Mapping[str, Any]) -> RuleSetDiff:
    """Rules added, removed and changed (field by field) from ``before`` to ``after``
    (validated documents, as stored)."""
    old, new = _rules_by_id(before), _rules_by_id(after)
    changed: list[RuleChange] = []
    for rule_id in old.keys() & new.keys():
        a, b = old[rule_id], new[rule_id]
        fields = {key: (a.get(key), b.get(key)) for key in sorted(a.keys() | b.keys())
                  if a.get(key) != b.get(key)}
        if fields:
            changed.append(RuleChange(rule_id, fields))
    name = None
    if before.get("name", "") != after.get("name", ""):
        name = (str(before.get("name", "")), str(after.get("name", "")))
    return RuleSetDiff(
        added=tuple(r for r in new if r not in old),
        removed=tuple(r for r in old if r not in new),
        changed=tuple(sorted(changed, key=lambda c: c.rule_id)),
        name=name,
    )


__all__ = [
    "FLEET_SCOPE",
    "GROUP_PREFIX",
    "RuleChange",
    "RuleSetDiff",
    "ScopedRuleSet",
    "diff_documents",
    "group_scope",
    "merge_rulesets",
]
