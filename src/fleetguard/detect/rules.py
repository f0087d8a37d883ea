"""Detection rules as data, and their evaluation on one report's features. Pure.

A :class:`RuleSet` is built from a validated document (:func:`fleetguard.detect.models.
parse_ruleset`); ``evaluate(ruleset, rule_state, features, context)`` returns the verdicts
of one report and the rule state the device's next report needs. Three kinds of rule:

- **threshold**: a feature compared with a value; fires once it has held for
  ``for_reports`` consecutive reports, and on every report after while it still holds. A
  report where the feature is absent (a new baseline has no rates) neither extends nor
  breaks the streak: nothing was observed. A new rule set keeps the streaks of the rules it
  keeps unchanged (same id, same definition); a changed rule starts counting anew.
- **allow-list**: destinations (CIDRs, optionally with ports), listening ports, or
  executables (a path pattern, ``fnmatch`` style, or a sha256); anything outside fires.
- **first-seen**: a device's first connection out to an address, first listener on a port,
  first run of a binary. Quiet while ``context.learning_until_ms`` has not passed: what the
  device shows then is learned (by the feature state), not flagged.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from fnmatch import fnmatchcase
from types import MappingProxyType

from fleetguard.core.severity import Severity
from fleetguard.detect.features import (
    Destination,
    Executable,
    Feature,
    FeatureVector,
    Listener,
)

IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class RuleKind(StrEnum):
    """What produced a verdict: a rule of a rule set (the first three), or a learned model."""

    THRESHOLD = "threshold"
    ALLOW_LIST = "allow_list"
    FIRST_SEEN = "first_seen"
    BASELINE = "baseline"  # the device against its own learned normal
    PEER = "peer"  # the device against its peers (same model and group) in the same window
    MODEL = "model"  # a multivariate model over all features at once


class Confidence(StrEnum):
    """How sure a verdict is: a rule is exact; a learned model is as sure as what it learned."""

    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"


class Subject(StrEnum):
    """What an allow-list or first-seen rule is about."""

    DESTINATION = "destination"
    LISTENER = "listener"
    EXECUTABLE = "executable"


class DestinationScope(StrEnum):
    """Which destinations a first-seen destination rule judges."""

    ANY = "any"
    # Outside the device's own networks: not private (RFC 1918), shared (RFC 6598), unique
    # local, link-local or loopback. A beacon, a pool, a drop site are out there; a device
    # carried to another site meets a new router and new neighbours, which are not.
    EXTERNAL = "external"


LOCAL_NETWORKS = tuple(ipaddress.ip_network(n) for n in (
    "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10", "127.0.0.0/8",
    "169.254.0.0/16", "fc00::/7", "fe80::/10", "::1/128",
))


def is_external(address: str) -> bool:
    """Whether ``address`` lies outside every local network (an unparsable one counts)."""
    try:
        parsed = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return True
    if isinstance(parsed, ipaddress.IPv6Address) and parsed.ipv4_mapped is not None:
        parsed = parsed.ipv4_mapped
    return not any(parsed.version == n.version and parsed in n for n in LOCAL_NETWORKS)


class Comparison(StrEnum):
    ABOVE = ">"
    AT_LEAST = ">="
    BELOW = "<"
    AT_MOST = "<="

    def holds(self, observed: float, threshold: float) -> bool:
        if self is Comparison.ABOVE:
            return observed > threshold
        if self is Comparison.AT_LEAST:
            return observed >= threshold
        if self is Comparison.BELOW:
            return observed < threshold
        return observed <= threshold


class Family(StrEnum):
    """The attack family a rule stands for (what the analyst triages by)."""

    SCANNING = "scanning"
    BRUTE_FORCE = "brute_force"
    BACKDOOR_LISTENER = "backdoor_listener"
    MINER = "miner"
    BEACON = "beacon"
    EXFILTRATION = "exfiltration"
    FLOODING = "flooding"
    UNEXPECTED_EXECUTABLE = "unexpected_executable"
    POLICY = "policy"  # an operator's own rule with no family
    ANOMALY = "anomaly"  # unlike the device's normal or its peers, no family known


@dataclass(frozen=True, slots=True)
class ThresholdRule:
    id: str
    severity: Severity
    family: Family
    feature: Feature
    comparison: Comparison
    value: float
    for_reports: int = 1
    description: str = ""
    kind: RuleKind = field(default=RuleKind.THRESHOLD, init=False)


@dataclass(frozen=True, slots=True)
class AllowedDestination:
    network: IpNetwork
    ports: frozenset[int] = frozenset()  # empty: every port

    def allows(self, destination: Destination) -> bool:
        try:
            address = ipaddress.ip_address(destination.address.split("%", 1)[0])
        except ValueError:
            return False
        return address in self.network and (not self.ports or destination.port in self.ports)


@dataclass(frozen=True, slots=True)
class AllowListRule:
    id: str
    severity: Severity
    family: Family
    subject: Subject
    destinations: tuple[AllowedDestination, ...] = ()
    listening_ports: frozenset[int] = frozenset()
    paths: tuple[str, ...] = ()  # fnmatch patterns: "/usr/*" covers everything below /usr
    sha256: frozenset[str] = frozenset()
    description: str = ""
    kind: RuleKind = field(default=RuleKind.ALLOW_LIST, init=False)

    def allows_executable(self, executable: Executable) -> bool:
        if executable.sha256 is not None and executable.sha256 in self.sha256:
            return True
        return any(fnmatchcase(executable.path, pattern) for pattern in self.paths)


@dataclass(frozen=True, slots=True)
class FirstSeenRule:
    id: str
    severity: Severity
    family: Family
    subject: Subject
    description: str = ""
    scope: DestinationScope = DestinationScope.ANY  # destinations only
    kind: RuleKind = field(default=RuleKind.FIRST_SEEN, init=False)


Rule = ThresholdRule | AllowListRule | FirstSeenRule


@dataclass(frozen=True, slots=True)
class RuleSet:
    version: int
    rules: tuple[Rule, ...]
    name: str = ""


@dataclass(frozen=True, slots=True)
class Streak:
    """A threshold rule holding on consecutive reports since ``since_ms``."""

    rule: ThresholdRule  # as it was when counted: a changed rule starts a new streak
    reports: int
    since_ms: int


@dataclass(frozen=True, slots=True)
class RuleState:
    """Per device: the threshold streaks under way, by rule id."""

    streaks: Mapping[str, Streak] = field(default_factory=lambda: MappingProxyType({}))


@dataclass(frozen=True, slots=True)
class EvaluationContext:
    learning_until_ms: int | None = None  # first-seen rules are quiet before this

    def learning(self, at_ms: int) -> bool:
        return self.learning_until_ms is not None and at_ms < self.learning_until_ms


@dataclass(frozen=True, slots=True)
class Verdict:
    """One rule that fired on one report, with what an analyst needs to judge it."""

    rule_id: str
    kind: RuleKind
    family: Family
    severity: Severity
    collected_at_ms: int
    since_ms: int  # the first report of the streak (this report unless a threshold)
    reports: int  # how many consecutive reports it has held
    summary: str  # what was seen, e.g. "tcp_failures_per_s 155 > 2 for 1 report(s)"
    description: str = ""  # the rule's own words on what this means
    features: tuple[Feature, ...] = ()
    observed: float | None = None
    comparison: Comparison | None = None
    threshold: float | None = None
    expected: str = ""  # for allow-lists: what was allowed
    destinations: tuple[Destination, ...] = ()
    remote_ports: tuple[int, ...] = ()
    listeners: tuple[Listener, ...] = ()
    executables: tuple[Executable, ...] = ()
    confidence: Confidence = Confidence.HIGH
    # For a learned model: the normal band the observation fell outside of.
    expected_low: float | None = None
    expected_high: float | None = None


def _threshold(
    rule: ThresholdRule, streak: Streak | None, features: FeatureVector
) -> tuple[Verdict | None, Streak | None]:
    observed = features.get(rule.feature)
    if observed is None:
        return None, streak  # no observation: the streak stands as it was
    if not rule.comparison.holds(observed, rule.value):
        return None, None
    streak = (Streak(rule, streak.reports + 1, streak.since_ms)
              if streak is not None and streak.rule == rule
              else Streak(rule, 1, features.collected_at_ms))
    if streak.reports < rule.for_reports:
        return None, streak
    verdict = Verdict(
        rule_id=rule.id, kind=rule.kind, family=rule.family, severity=rule.severity,
        collected_at_ms=features.collected_at_ms, since_ms=streak.since_ms,
        reports=streak.reports,
        summary=(f"{rule.feature.value} {observed:g} {rule.comparison.value} {rule.value:g}"
                 f" for {streak.reports} report(s)"),
        description=rule.description,
        features=(rule.feature,), observed=observed, comparison=rule.comparison,
        threshold=rule.value,
    )
    return verdict, streak


def _describe_allowed(rule: AllowListRule) -> str:
    if rule.subject is Subject.DESTINATION:
        return ", ".join(
            f"{d.network}" + (f" ports {','.join(map(str, sorted(d.ports)))}" if d.ports else "")
            for d in rule.destinations) or "nothing"
    if rule.subject is Subject.LISTENER:
        return "ports " + (",".join(map(str, sorted(rule.listening_ports))) or "none")
    return ", ".join([*rule.paths, *sorted(rule.sha256)]) or "nothing"


@dataclass(frozen=True, slots=True)
class _Named:
    """The destinations, listeners and binaries a rule names on one report."""

    destinations: tuple[Destination, ...] = ()
    listeners: tuple[Listener, ...] = ()
    executables: tuple[Executable, ...] = ()

    def names(self) -> str:
        return ", ".join([*(f"{d.address}:{d.port}" for d in self.destinations),
                          *(f"{x.proto}/{x.port}" for x in self.listeners),
                          *(e.path for e in self.executables)])


def _naming_verdict(
    rule: AllowListRule | FirstSeenRule, features: FeatureVector, named: _Named, *,
    what: str, involved: tuple[Feature, ...], expected: str, remote_ports: tuple[int, ...] = (),
) -> Verdict | None:
    if not (named.destinations or named.listeners or named.executables):
        return None  # the common case, decided before any text is made
    return Verdict(
        rule_id=rule.id, kind=rule.kind, family=rule.family, severity=rule.severity,
        collected_at_ms=features.collected_at_ms, since_ms=features.collected_at_ms,
        reports=1, summary=f"{what}: {named.names()}", description=rule.description,
        features=involved, expected=expected,
        destinations=named.destinations, remote_ports=remote_ports,
        listeners=named.listeners, executables=named.executables,
    )


def _allow_list(rule: AllowListRule, features: FeatureVector) -> Verdict | None:
    named = _Named(
        destinations=tuple(
            d for d in features.destinations if rule.subject is Subject.DESTINATION
            and not any(a.allows(d) for a in rule.destinations)),
        listeners=tuple(
            x for x in features.listeners if rule.subject is Subject.LISTENER
            and x.port not in rule.listening_ports),
        executables=tuple(
            e for e in features.executables if rule.subject is Subject.EXECUTABLE
            and not rule.allows_executable(e)),
    )
    return _naming_verdict(
        rule, features, named, what=f"{rule.subject.value} outside the allow-list",
        involved=_SUBJECT_FEATURES[rule.subject], expected=_describe_allowed(rule))


_SUBJECT_FEATURES = {
    Subject.DESTINATION: (Feature.REMOTE_ADDRESSES, Feature.REMOTE_PORTS),
    Subject.LISTENER: (Feature.LISTENERS_ADDED,),
    Subject.EXECUTABLE: (Feature.NEW_EXECUTABLES,),
}
_FIRST_SEEN_FEATURES = {
    Subject.DESTINATION: (Feature.NEW_REMOTE_ADDRESSES,),
    Subject.LISTENER: (Feature.LISTENERS_ADDED,),
    Subject.EXECUTABLE: (Feature.NEW_EXECUTABLES,),
}


def _first_seen(
    rule: FirstSeenRule, features: FeatureVector, context: EvaluationContext
) -> Verdict | None:
    if context.learning(features.collected_at_ms):
        return None
    subject = rule.subject
    destinations = features.new_destinations if subject is Subject.DESTINATION else ()
    if rule.scope is DestinationScope.EXTERNAL:
        destinations = tuple(d for d in destinations if is_external(d.address))
    named = _Named(
        destinations=destinations,
        listeners=features.first_listeners if subject is Subject.LISTENER else (),
        executables=features.first_executables if subject is Subject.EXECUTABLE else (),
    )
    return _naming_verdict(
        rule, features, named, what=f"first {subject.value} ever seen",
        involved=_FIRST_SEEN_FEATURES[subject], expected="seen before on this device",
        remote_ports=_new_ports_of(features, named.destinations))


def _new_ports_of(
    features: FeatureVector, destinations: tuple[Destination, ...]
) -> tuple[int, ...]:
    """The report's new remote ports that the named destinations were reached on."""
    ports = {d.port for d in destinations}
    return tuple(p for p in features.new_remote_ports if p in ports)


def evaluate(
    ruleset: RuleSet,
    rule_state: RuleState | None,
    features: FeatureVector,
    context: EvaluationContext,
) -> tuple[list[Verdict], RuleState]:
    """The verdicts of ``ruleset`` on one report's features, and the device's next state."""
    streaks = rule_state.streaks if rule_state is not None else {}
    next_streaks: dict[str, Streak] = {}
    verdicts: list[Verdict] = []
    for rule in ruleset.rules:
        verdict: Verdict | None
        if isinstance(rule, ThresholdRule):
            verdict, streak = _threshold(rule, streaks.get(rule.id), features)
            if streak is not None:
                next_streaks[rule.id] = streak
        elif isinstance(rule, AllowListRule):
            verdict = _allow_list(rule, features)
        else:
            verdict = _first_seen(rule, features, context)
        if verdict is not None:
            verdicts.append(verdict)
    return verdicts, RuleState(MappingProxyType(next_streaks))


__all__ = [
    "AllowListRule",
    "AllowedDestination",
    "Comparison",
    "Confidence",
    "DestinationScope",
    "EvaluationContext",
    "Family",
    "FirstSeenRule",
    "Rule",
    "RuleKind",
    "RuleSet",
    "RuleState",
    "Streak",
    "Subject",
    "ThresholdRule",
    "Verdict",
    "evaluate",
]
