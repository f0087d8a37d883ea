"""The finding lifecycle as pure rules: given what is stored and what one scan saw, decide.

No database and no clock here: :mod:`fleetguard.findings.ingest` reads the rows, asks
:func:`reconcile`, and writes what it decided. A finding is keyed by (subject, port,
protocol, check), where the subject is the matched device or, for a host no device
claims, its address::

    first sight -> opened;  seen again -> updated (last seen, evidence, severity, address);
    a later scan that covered it and did not see it -> resolved;  seen again -> reopened;
    not seen by a scan that did not cover it -> kept open.

"Covered" is strict, so that a scan that could not look never claims a fix: the host was
in the scan and answered (``status: up``), or the device answered at a new address and no
longer lists the old one; the port was open in that scan or is known to have been scanned
(the scan's port list) and was not filtered or silent; no note says the check could not
run there; and checks that need login attempts are resolved only by scans that made them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from fleetguard.findings.models import CREDENTIAL_CHECKS, FindingState, MatchMethod
from fleetguard.protocol.scan_report import (
    HostStatus,
    PortState,
    ReportFinding,
    ScanReportDocument,
)

FindingKey = tuple[str, int, str, str]  # subject, port, protocol, check
NoteKey = tuple[str, int, str, str]  # host, port, protocol, check
PortKey = tuple[str, int]  # protocol, port
MAX_EVIDENCE = 4000
_SILENT = frozenset({PortState.FILTERED, PortState.OPEN_FILTERED})


@dataclass(slots=True)
class ScannedHost:
    """One address of a scan as the rules see it: did it answer, where, and who it is."""

    address: str
    up: bool
    open_ports: set[PortKey] = field(default_factory=set)
    silent_ports: set[PortKey] = field(default_factory=set)  # filtered, open|filtered
    serials: set[str] = field(default_factory=set)
    subject: str = ""
    device_id: str | None = None
    matched_by: MatchMethod = MatchMethod.UNMATCHED
    findings: int = 0

    def claim(self, device_id: str | None, matched_by: MatchMethod) -> None:
        """Give the host its subject: the device it was matched to, else its address."""
        self.device_id, self.matched_by = device_id, matched_by
        self.subject = f"device:{device_id}" if device_id else f"host:{self.address}"


@dataclass(frozen=True, slots=True)
class KnownFinding:
    """A stored finding, as the rules need it."""

    subject: str
    port: int
    protocol: str
    check: str
    state: FindingState
    host: str  # the address it was last seen at
    device_id: str | None

    @property
    def key(self) -> FindingKey:
        return (self.subject, self.port, self.protocol, self.check)


@dataclass(frozen=True, slots=True)
class ScanCoverage:
    """What one scan could see: its hosts, and what it says it could not check."""

    hosts: Mapping[str, ScannedHost]  # by address
    device_addresses: Mapping[str, Sequence[str]]  # registered addresses of matched devices
    notes: frozenset[NoteKey] = frozenset()
    scanned_ports: frozenset[PortKey] | None = None  # the scan's port list, when known
    credentials_used: bool = False
    _up_at_device: dict[str, list[ScannedHost]] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        up_at_device: dict[str, list[ScannedHost]] = {}
        for h in self.hosts.values():
            if h.up and h.device_id is not None:
                up_at_device.setdefault(h.device_id, []).append(h)
        object.__setattr__(self, "_up_at_device", up_at_device)  # (frozen: set once here)

    def _covering_host(self, finding: KnownFinding) -> ScannedHost | None:
        host = self.hosts.get(finding.host)
        if host is not None and host.up and host.subject == finding.subject:
            return host
        if finding.device_id is None or host is not None:
            return None
        # The device answered at another address and no longer lists the old one: it moved.
        addresses = self.device_addresses.get(finding.device_id)
        if addresses is None or finding.host in addresses:
            return None
        at = self._up_at_device.get(finding.device_id, [])
        return at[0] if len(at) == 1 else None

    def covers(self, finding: KnownFinding) -> bool:
        """Whether this scan looked where ``finding`` was, well enough to call it gone."""
        host = self._covering_host(finding)
        if host is None:
            return False
        port = (finding.protocol, finding.port)
        if port in host.silent_ports:
            return False
        scanned = self.scanned_ports is not None and port in self.scanned_ports
        if port not in host.open_ports and not scanned:
            return False
        checks = (finding.check, "scan")
        if any((host.address, finding.port, finding.protocol, c) in self.notes for c in checks):
            return False
        return self.credentials_used or finding.check not in CREDENTIAL_CHECKS


@dataclass(frozen=True, slots=True)
class Transitions:
    """What one scan does to the findings, by key, in a stable order."""

    opened: tuple[FindingKey, ...] = ()
    updated: tuple[FindingKey, ...] = ()
    reopened: tuple[FindingKey, ...] = ()
    resolved: tuple[FindingKey, ...] = ()
    kept_open: tuple[FindingKey, ...] = ()


def reconcile(
    known: Iterable[KnownFinding], reported: Iterable[FindingKey], coverage: ScanCoverage
) -> Transitions:
    """Decide each finding's transition: reported ones open, update or reopen; open ones
    the scan did not report resolve if it covered them, else stay open."""
    stored = {f.key: f for f in known}
    seen = list(dict.fromkeys(reported))
    opened = tuple(k for k in seen if k not in stored)
    reopened = tuple(k for k in seen if k in stored and stored[k].state is FindingState.RESOLVED)
    updated = tuple(k for k in seen if k in stored and stored[k].state is FindingState.OPEN)
    seen_keys = set(seen)
    missing = [f for k, f in stored.items() if k not in seen_keys and f.state is FindingState.OPEN]
    gone = {f.key for f in missing if coverage.covers(f)}
    resolved = tuple(f.key for f in missing if f.key in gone)
    kept_open = tuple(f.key for f in missing if f.key not in gone)
    return Transitions(opened, updated, reopened, resolved, kept_open)


def scanned_hosts(report: ScanReportDocument) -> dict[str, ScannedHost]:
    """Each address of the report, with the ports it answered or stayed silent on."""
    hosts: dict[str, ScannedHost] = {}
    for h in report.hosts:
        host = hosts.setdefault(h.address, ScannedHost(h.address, up=False))
        host.up = host.up or h.status is HostStatus.UP
        for p in h.ports:
            if p.state is PortState.OPEN:
                host.open_ports.add((p.protocol.value, p.port))
            elif p.state in _SILENT:
                host.silent_ports.add((p.protocol.value, p.port))
        for s in h.services:
            host.open_ports.add((s.protocol.value, s.port))
            serial = (s.extra.get("serialNumber") or "").strip()
            if serial:
                host.serials.add(serial[:128])
    for f in report.findings:  # a finding proves the host answered on that port
        host = hosts.setdefault(f.host, ScannedHost(f.host, up=True))
        host.up = True
        host.open_ports.add((f.protocol.value, f.port))
    return hosts


def clip(value: str, limit: int) -> str:
    """``value`` cut to ``limit`` characters, the cut marked (stored text is bounded)."""
    return value if len(value) <= limit else value[: limit - 1] + "…"


def _worse_of(one: ReportFinding, other: ReportFinding) -> ReportFinding:
    """The same check twice on one port: keep the worse, with the evidence of both."""
    worse, lesser = (one, other) if one.severity.rank > other.severity.rank else (other, one)
    if lesser.evidence in worse.evidence:
        return worse
    evidence = clip(f"{worse.evidence}; {lesser.evidence}", MAX_EVIDENCE)
    return worse.model_copy(update={"evidence": evidence})


def reported_findings(
    report: ScanReportDocument, hosts: Mapping[str, ScannedHost]
) -> dict[FindingKey, tuple[ScannedHost, ReportFinding]]:
    """The report's findings, one per key (hosts already matched); counts them per host."""
    reported: dict[FindingKey, tuple[ScannedHost, ReportFinding]] = {}
    for f in report.findings:
        host = hosts[f.host]
        host.findings += 1
        key = (host.subject, f.port, f.protocol.value, f.check)
        seen = reported.get(key)
        reported[key] = (host, f if seen is None else _worse_of(f, seen[1]))
    return reported


def report_notes(report: ScanReportDocument) -> frozenset[NoteKey]:
    return frozenset((n.host, n.port, n.protocol.value, n.check) for n in report.notes)


__all__ = [
    "MAX_EVIDENCE",
    "FindingKey",
    "KnownFinding",
    "ScanCoverage",
    "ScannedHost",
    "Transitions",
    "clip",
    "reconcile",
    "report_notes",
    "reported_findings",
    "scanned_hosts",
]
