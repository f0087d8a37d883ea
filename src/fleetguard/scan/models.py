"""Plain data of a scan: what was asked, what was seen, what was found.

The JSON form of a report (``ScanReport.to_dict``) is a documented, stable contract
(see ``docs/scan-checks.md``); fields are only ever added to it.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from fleetguard.core.severity import Severity


class Transport(StrEnum):
    TCP = "tcp"
    UDP = "udp"


class Service(StrEnum):
    TELNET = "telnet"
    SSH = "ssh"
    FTP = "ftp"
    HTTP = "http"
    HTTPS = "https"
    RTSP = "rtsp"
    MQTT = "mqtt"
    SNMP = "snmp"
    UPNP = "upnp"
    COAP = "coap"
    MDNS = "mdns"
    TLS = "tls"  # TLS whose inner protocol was not recognised
    UNKNOWN = "unknown"


class PortState(StrEnum):
    OPEN = "open"
    CLOSED = "closed"
    FILTERED = "filtered"  # no answer within the timeout (TCP)
    OPEN_FILTERED = "open|filtered"  # UDP: no answer to any probe; cannot tell


class HostStatus(StrEnum):
    UP = "up"  # at least one port answered (open or closed)
    NO_RESPONSE = "no-response"  # every probe timed out: down, or firewalled


@dataclass(frozen=True, slots=True)
class Target:
    """One address to scan; ``name`` is the hostname it came from, if any."""

    address: str
    name: str | None = None

    @property
    def is_ipv6(self) -> bool:
        return ":" in self.address


@dataclass(frozen=True, slots=True)
class PortSpec:
    port: int
    transport: Transport


@dataclass(slots=True)
class ServiceInfo:
    port: int
    transport: Transport
    service: Service
    tls: bool = False
    product: str | None = None
    version: str | None = None
    vendor: str | None = None
    model: str | None = None
    banner: str | None = None
    extra: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "port": self.port,
            "protocol": self.transport.value,
            "service": self.service.value,
            "product": self.product,
            "version": self.version,
            "tls": self.tls,
        }
        if self.vendor:
            out["vendor"] = self.vendor
        if self.model:
            out["model"] = self.model
        if self.banner:
            out["banner"] = self.banner
        if self.extra:
            out["extra"] = dict(sorted(self.extra.items()))
        return out


@dataclass(frozen=True, slots=True)
class Finding:
    host: str
    port: int
    transport: Transport
    service: Service
    check: str
    severity: Severity
    title: str
    evidence: str
    remediation: str
    references: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "host": self.host,
            "port": self.port,
            "protocol": self.transport.value,
            "service": self.service.value,
            "check": self.check,
            "severity": self.severity.value,
            "title": self.title,
            "evidence": self.evidence,
            "remediation": self.remediation,
            "references": list(self.references),
        }


@dataclass(frozen=True, slots=True)
class Note:
    """A check that could not be run or could not decide: never silently dropped."""

    host: str
    port: int
    transport: Transport
    check: str
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "host": self.host,
            "port": self.port,
            "protocol": self.transport.value,
            "check": self.check,
            "reason": self.reason,
        }


@dataclass(slots=True)
class PortResult:
    port: int
    transport: Transport
    state: PortState
    reason: str = ""


@dataclass(slots=True)
class HostResult:
    target: Target
    ports: list[PortResult] = field(default_factory=list)
    services: list[ServiceInfo] = field(default_factory=list)

    @property
    def status(self) -> HostStatus:
        answered = any(p.state in (PortState.OPEN, PortState.CLOSED) for p in self.ports) or bool(
            self.services
        )
        return HostStatus.UP if answered else HostStatus.NO_RESPONSE

    def to_dict(self) -> dict[str, Any]:
        counts = {state: 0 for state in PortState}
        for p in self.ports:
            counts[p.state] += 1
        out: dict[str, Any] = {
            "address": self.target.address,
            "hostname": self.target.name,
            "status": self.status.value,
            "services": [s.to_dict() for s in sorted(self.services, key=_service_key)],
            "ports": [
                {"port": p.port, "protocol": p.transport.value, "state": p.state.value}
                | ({"reason": p.reason} if p.reason else {})
                for p in sorted(self.ports, key=lambda p: (p.transport.value, p.port))
                if p.state is not PortState.CLOSED
            ],
            "counts": {state.value: n for state, n in counts.items()},
        }
        return out


def _service_key(s: ServiceInfo) -> tuple[str, int]:
    return (s.transport.value, s.port)


@dataclass(slots=True)
class ScanReport:
    targets: list[str]
    started: dt.datetime
    finished: dt.datetime
    hosts: list[HostResult]
    findings: list[Finding]
    notes: list[Note]
    options: dict[str, Any] = field(default_factory=dict)

    def worst_severity(self) -> Severity | None:
        if not self.findings:
            return None
        return max((f.severity for f in self.findings), key=lambda s: s.rank)

    def findings_at_or_above(self, severity: Severity) -> list[Finding]:
        return [f for f in self.findings if f.severity.rank >= severity.rank]

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": "fleetguard.scan/1",
            "targets": list(self.targets),
            "started": self.started.isoformat(),
            "finished": self.finished.isoformat(),
            "options": dict(self.options),
            "hosts": [h.to_dict() for h in self.hosts],
            "findings": [f.to_dict() for f in self.findings],
            "notes": [n.to_dict() for n in self.notes],
        }


__all__ = [
    "Finding",
    "HostResult",
    "HostStatus",
    "Note",
    "PortResult",
    "PortSpec",
    "PortState",
    "ScanReport",
    "Service",
    "ServiceInfo",
    "Severity",
    "Target",
    "Transport",
]
