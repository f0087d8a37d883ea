"""Alarms from verdicts: dedup, rate limit, auto-resolution, operators' feedback. Pure.

An alarm stands for one *cause* on one device: a rule (or learned model) and what it is
about (:func:`cause_of`). Per report of a device, :func:`plan_alarms` decides, from the
device's open alarms and the report's verdicts:

- a verdict whose cause has an open alarm (active or acknowledged) **updates** it (count of
  reports, last seen, what it named): one alarm per device and cause, never repeated;
- a verdict with no open alarm **opens** one, unless the device already opened
  :attr:`AlarmPolicy.max_new_per_minute` alarms in the last minute: the excess is
  **suppressed** (counted on the device's latest alarm and in the service's stats);
- an open alarm whose cause did not fire counts a quiet report; after
  :attr:`AlarmPolicy.quiet_reports_to_resolve` quiet reports in a row it **resolves**
  (``resolved_by = "detection"``). A resolved cause that fires again opens a new alarm.

Feedback (:class:`DeviceFeedback`, from operators' false-positive verdicts) is applied to
verdicts before planning: a subject an operator allowed for the device (a destination,
listener or binary) is taken out of the verdicts that name it, and a rule suppressed on the
device gives no verdict at all.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum

from fleetguard.detect.rules import Confidence, RuleKind, Verdict

MINUTE_MS = 60_000


class AlarmState(StrEnum):
    ACTIVE = "active"
    ACKNOWLEDGED = "acknowledged"
    RESOLVED = "resolved"


OPEN_STATES = frozenset({AlarmState.ACTIVE, AlarmState.ACKNOWLEDGED})


class AlarmVerdict(StrEnum):
    TRUE_POSITIVE = "true_positive"
    FALSE_POSITIVE = "false_positive"


CONFIDENCE_RANK = {Confidence.LOW: 0, Confidence.MEDIUM: 1, Confidence.HIGH: 2}
NAMING_KINDS = frozenset({RuleKind.ALLOW_LIST, RuleKind.FIRST_SEEN})
DETECTION_ACTOR = "detection"


@dataclass(frozen=True, slots=True)
class AlarmPolicy:
    """How alarms are kept. Defaults: an alarm resolves after 10 reports of its device
    without its cause (10 minutes at the agent's default minute), and a device opens at
    most 5 new alarms a minute (an attack fires a handful of rules at once; more is a
    storm an analyst cannot read)."""

    quiet_reports_to_resolve: int = 10
    max_new_per_minute: int = 5
    max_subjects: int = 64  # per kind of subject an alarm keeps (destinations, ports, ...)


def cause_of(verdict: Verdict) -> str:
    """The dedup key: the rule and what it is about (its features; a naming rule's subject
    kind is fixed by the rule, so the rule id says it)."""
    if verdict.kind in NAMING_KINDS:
        return verdict.rule_id
    return f"{verdict.rule_id}:{'+'.join(sorted(f.value for f in verdict.features))}"


# --- feedback --------------------------------------------------------------------------


def subject_keys(verdict: Verdict) -> list[str]:
    """What a naming verdict names, as keys an operator's feedback can allow."""
    return [
        *(f"destination:{d.address}:{d.port}" for d in verdict.destinations),
        *(f"listener:{x.proto}/{x.port}" for x in verdict.listeners),
        *(f"executable:{e.key}" for e in verdict.executables),
    ]


@dataclass(frozen=True, slots=True)
class DeviceFeedback:
    """What operators' false positives changed for one device."""

    allowed: frozenset[str] = frozenset()  # subject keys (see subject_keys)
    suppressed_rules: frozenset[str] = frozenset()

    def __bool__(self) -> bool:
        return bool(self.allowed or self.suppressed_rules)


NO_FEEDBACK = DeviceFeedback()


def _without_allowed(verdict: Verdict, allowed: frozenset[str]) -> Verdict | None:
    destinations = tuple(d for d in verdict.destinations
                         if f"destination:{d.address}:{d.port}" not in allowed)
    listeners = tuple(x for x in verdict.listeners if f"listener:{x.proto}/{x.port}" not in allowed)
    executables = tuple(e for e in verdict.executables if f"executable:{e.key}" not in allowed)
    if not (destinations or listeners or executables):
        return None
    if (len(destinations), len(listeners), len(executables)) == (
            len(verdict.destinations), len(verdict.listeners), len(verdict.executables)):
        return verdict
    ports = tuple(sorted({d.port for d in destinations} & set(verdict.remote_ports)))
    return replace(verdict, destinations=destinations, listeners=listeners,
                   executables=executables, remote_ports=ports)


def apply_feedback(verdicts: Iterable[Verdict], feedback: DeviceFeedback) -> list[Verdict]:
    """The verdicts left once the device's feedback is applied."""
    if not feedback:
        return list(verdicts)
    kept: list[Verdict] = []
    for verdict in verdicts:
        if verdict.rule_id in feedback.suppressed_rules:
            continue
        if verdict.kind in NAMING_KINDS and feedback.allowed:
            narrowed = _without_allowed(verdict, feedback.allowed)
            if narrowed is None:
                continue
            verdict = narrowed
        kept.append(verdict)
    return kept


# --- planning --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class OpenAlarm:
    """What the planner needs of an open alarm."""

    id: int
    cause: str
    quiet_reports: int = 0


@dataclass(frozen=True, slots=True)
class AlarmPlan:
    opened: tuple[Verdict, ...] = ()
    updated: tuple[tuple[int, Verdict], ...] = ()  # (alarm id, verdict)
    resolved: tuple[int, ...] = ()  # alarm ids resolved for quiet
    quiet: Mapping[int, int] = field(default_factory=dict)  # alarm id -> quiet reports now
    suppressed: int = 0  # verdicts that would have opened an alarm past the rate limit
    recent_openings_ms: tuple[int, ...] = ()  # the device's new alarms within the minute

    @property
    def changed(self) -> bool:
        return bool(self.opened or self.updated or self.resolved or self.suppressed)


def _within_minute(openings_ms: Sequence[int], now_ms: int) -> list[int]:
    return [t for t in openings_ms if now_ms - t < MINUTE_MS]


def plan_alarms(
    open_alarms: Mapping[str, OpenAlarm], verdicts: Sequence[Verdict], *, now_ms: int,
    recent_openings_ms: Sequence[int], policy: AlarmPolicy,
) -> AlarmPlan:
    """What one report of a device does to its alarms (see the module docstring).

    ``open_alarms`` by cause; ``recent_openings_ms``: when the device's latest alarms were
    opened (server clock), for the rate limit."""
    recent = _within_minute(recent_openings_ms, now_ms)
    opened: list[Verdict] = []
    updated: list[tuple[int, Verdict]] = []
    fired: set[str] = set()
    suppressed = 0
    for verdict in verdicts:
        cause = cause_of(verdict)
        if cause in fired:
            continue  # one verdict per cause and report
        fired.add(cause)
        alarm = open_alarms.get(cause)
        if alarm is not None:
            updated.append((alarm.id, verdict))
        elif len(recent) < policy.max_new_per_minute:
            opened.append(verdict)
            recent.append(now_ms)
        else:
            suppressed += 1
    resolved: list[int] = []
    quiet: dict[int, int] = {}
    for cause, alarm in open_alarms.items():
        if cause in fired:
            continue
        count = alarm.quiet_reports + 1
        if count >= policy.quiet_reports_to_resolve:
            resolved.append(alarm.id)
        else:
            quiet[alarm.id] = count
    return AlarmPlan(opened=tuple(opened), updated=tuple(updated), resolved=tuple(resolved),
                     quiet=quiet, suppressed=suppressed, recent_openings_ms=tuple(recent))


# --- what an alarm names ---------------------------------------------------------------


def subjects_of(verdict: Verdict) -> dict[str, list[object]]:
    """The new destinations, ports, listeners and binaries a verdict names, as JSON data."""
    out: dict[str, list[object]] = {}
    if verdict.destinations:
        out["destinations"] = [{"address": d.address, "port": d.port}
                               for d in verdict.destinations]
    if verdict.remote_ports:
        out["remote_ports"] = list(verdict.remote_ports)
    if verdict.listeners:
        out["listeners"] = [{"proto": x.proto, "port": x.port} for x in verdict.listeners]
    if verdict.executables:
        out["executables"] = [{"path": e.path, "sha256": e.sha256} for e in verdict.executables]
    return out


def merge_subjects(
    before: Mapping[str, list[object]], more: Mapping[str, list[object]], cap: int
) -> dict[str, list[object]]:
    """``before`` with what ``more`` adds, each list at most ``cap`` long (first kept)."""
    merged: dict[str, list[object]] = {k: list(v) for k, v in before.items()}
    for key, items in more.items():
        current = merged.setdefault(key, [])
        for item in items:
            if len(current) >= cap:
                break
            if item not in current:
                current.append(item)
    return merged


__all__ = [
    "CONFIDENCE_RANK",
    "DETECTION_ACTOR",
    "NO_FEEDBACK",
    "OPEN_STATES",
    "AlarmPlan",
    "AlarmPolicy",
    "AlarmState",
    "AlarmVerdict",
    "DeviceFeedback",
    "OpenAlarm",
    "apply_feedback",
    "cause_of",
    "merge_subjects",
    "plan_alarms",
    "subject_keys",
    "subjects_of",
]
