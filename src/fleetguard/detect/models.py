"""The rule set document: what an operator writes, validated strictly before activation.

A document (JSON or YAML-shaped data) is checked as a whole, and refused as a whole, with
a :class:`~fleetguard.detect.errors.RuleSetInvalidError` naming the rule and the field:
an unknown feature, a malformed or host-bits CIDR, a negative threshold, a duplicate rule
id, an allow-list field that does not fit its subject. A valid document becomes a
:class:`~fleetguard.detect.rules.RuleSet` of frozen dataclasses::

    {"version": 3, "name": "cameras",
     "rules": [
       {"kind": "threshold", "id": "scan.tcp-failures", "severity": "high",
        "family": "scanning", "feature": "tcp_failures_per_s", "comparison": ">",
        "value": 2, "for_reports": 1},
       {"kind": "allow_list", "id": "egress", "severity": "medium", "subject": "destination",
        "destinations": [{"cidr": "203.0.113.0/24", "ports": [443]}]},
       {"kind": "first_seen", "id": "new-listener", "severity": "high",
        "family": "backdoor_listener", "subject": "listener"}]}
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from pydantic import model_validator as _model_validator
from pydantic_core import PydanticCustomError

from fleetguard.core.severity import Severity
from fleetguard.detect.errors import RuleSetInvalidError
from fleetguard.detect.features import Feature
from fleetguard.detect.rules import (
    AllowedDestination,
    AllowListRule,
    Comparison,
    DestinationScope,
    Family,
    FirstSeenRule,
    Rule,
    RuleSet,
    Subject,
    ThresholdRule,
)

MAX_RULES = 1000
MAX_ALLOWED = 4096
RuleId = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[a-z0-9][a-z0-9_.-]*$")]
Port = Annotated[int, Field(ge=0, le=65535)]
Sha256Hex = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]
PathPattern = Annotated[str, Field(min_length=1, max_length=1024, pattern=r"^/")]
Description = Annotated[str, Field(max_length=500)]


class _Document(BaseModel):
    """Strict and closed: a typo in a field name is an error, not a silent default."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True, allow_inf_nan=False)


class _RuleDocument(_Document):
    id: RuleId
    severity: Severity = Field(strict=False)
    family: Family = Field(default=Family.POLICY, strict=False)
    description: Description = ""


class ThresholdRuleDocument(_RuleDocument):
    kind: Literal["threshold"]
    feature: Feature = Field(strict=False)
    comparison: Comparison = Field(default=Comparison.ABOVE, strict=False)
    value: float = Field(ge=0)
    for_reports: int = Field(default=1, ge=1, le=1000)

    def to_rule(self) -> ThresholdRule:
        return ThresholdRule(
            id=self.id, severity=self.severity, family=self.family, feature=self.feature,
            comparison=self.comparison, value=self.value, for_reports=self.for_reports,
            description=self.description)


class AllowedDestinationDocument(_Document):
    cidr: str = Field(max_length=64)
    ports: list[Port] = Field(default_factory=list, max_length=1024)

    @field_validator("cidr")
    @classmethod
    def _is_a_network(cls, value: str) -> str:
        try:
            ipaddress.ip_network(value, strict=True)
        except ValueError as exc:
            raise ValueError(f"{value!r} is not a network in CIDR notation ({exc})") from None
        return value

    def to_allowed(self) -> AllowedDestination:
        return AllowedDestination(ipaddress.ip_network(self.cidr), frozenset(self.ports))


class AllowListRuleDocument(_RuleDocument):
    kind: Literal["allow_list"]
    subject: Subject = Field(strict=False)
    destinations: list[AllowedDestinationDocument] = Field(
        default_factory=list, max_length=MAX_ALLOWED)
    listening_ports: list[Port] = Field(default_factory=list, max_length=MAX_ALLOWED)
    paths: list[PathPattern] = Field(default_factory=list, max_length=MAX_ALLOWED)
    sha256: list[Sha256Hex] = Field(default_factory=list, max_length=MAX_ALLOWED)

    @_model_validator(mode="after")
    def _fields_fit_the_subject(self) -> AllowListRuleDocument:
        fitting = {
            Subject.DESTINATION: {"destinations"},
            Subject.LISTENER: {"listening_ports"},
            Subject.EXECUTABLE: {"paths", "sha256"},
        }[self.subject]
        for name in ("destinations", "listening_ports", "paths", "sha256"):
            if getattr(self, name) and name not in fitting:
                raise ValueError(f"'{name}' does not apply to subject '{self.subject.value}'")
        return self

    def to_rule(self) -> AllowListRule:
        return AllowListRule(
            id=self.id, severity=self.severity, family=self.family, subject=self.subject,
            destinations=tuple(d.to_allowed() for d in self.destinations),
            listening_ports=frozenset(self.listening_ports), paths=tuple(self.paths),
            sha256=frozenset(self.sha256), description=self.description)


class FirstSeenRuleDocument(_RuleDocument):
    kind: Literal["first_seen"]
    subject: Subject = Field(strict=False)
    scope: DestinationScope = Field(default=DestinationScope.ANY, strict=False)

    @_model_validator(mode="after")
    def _scope_fits_the_subject(self) -> FirstSeenRuleDocument:
        if self.scope is not DestinationScope.ANY and self.subject is not Subject.DESTINATION:
            raise ValueError(f"'scope' does not apply to subject '{self.subject.value}'")
        return self

    def to_rule(self) -> FirstSeenRule:
        return FirstSeenRule(id=self.id, severity=self.severity, family=self.family,
                             subject=self.subject, description=self.description,
                             scope=self.scope)


RuleDocument = Annotated[
    ThresholdRuleDocument | AllowListRuleDocument | FirstSeenRuleDocument,
    Field(discriminator="kind"),
]


class RuleSetDocument(_Document):
    version: int = Field(ge=1)
    name: Description = ""
    rules: list[RuleDocument] = Field(max_length=MAX_RULES)

    @_model_validator(mode="after")
    def _ids_are_unique(self) -> RuleSetDocument:
        seen: set[str] = set()
        for rule in self.rules:
            if rule.id in seen:
                raise PydanticCustomError(
                    "duplicate_rule_id", "duplicate rule id '{rule_id}'", {"rule_id": rule.id})
            seen.add(rule.id)
        return self

    def to_ruleset(self) -> RuleSet:
        rules: tuple[Rule, ...] = tuple(rule.to_rule() for rule in self.rules)
        return RuleSet(version=self.version, rules=rules, name=self.name)


def _rule_id_at(data: object, index: int) -> str:
    rules = data.get("rules") if isinstance(data, Mapping) else None
    if isinstance(rules, list) and 0 <= index < len(rules) and isinstance(rules[index], Mapping):
        rule_id = rules[index].get("id")
        if isinstance(rule_id, str):
            return rule_id
    return f"#{index + 1}"


def _invalid(exc: ValidationError, data: object) -> RuleSetInvalidError:
    """The first error, named by rule and field; the others counted."""
    error = exc.errors()[0]
    loc = error["loc"]
    rule_id: str | None = None
    if error["type"] == "duplicate_rule_id":
        rule_id, field = str((error.get("ctx") or {}).get("rule_id")), "id"
    elif len(loc) >= 2 and loc[0] == "rules" and isinstance(loc[1], int):
        rule_id = _rule_id_at(data, loc[1])
        # loc[2] is the kind's tag; without it the kind itself was wrong; with nothing after
        # it, the rule as a whole (a check across its fields).
        field = ".".join(str(part) for part in loc[3:]) or ("rule" if len(loc) > 2 else "kind")
    else:
        field = ".".join(str(part) for part in loc) or "document"
    where = f"rule {rule_id!r}, field {field!r}" if rule_id else f"field {field!r}"
    message = error["msg"]
    if error["type"] == "enum":
        message = f"{error['input']!r} is unknown; {message[0].lower()}{message[1:]}"
    more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
    return RuleSetInvalidError(f"{where}: {message}{more}", rule_id=rule_id, field=field)


def parse_ruleset(data: Any) -> RuleSet:
    """A validated rule set from a document; :class:`RuleSetInvalidError` if it is not one."""
    try:
        return RuleSetDocument.model_validate(data).to_ruleset()
    except ValidationError as exc:
        raise _invalid(exc, data) from None


__all__ = [
    "AllowListRuleDocument",
    "AllowedDestinationDocument",
    "FirstSeenRuleDocument",
    "RuleDocument",
    "RuleSetDocument",
    "ThresholdRuleDocument",
    "parse_ruleset",
]
