"""Plain data of a scan while it runs: what was asked, what was seen, what was found.

Findings and notes are the wire format's own (:mod:`fleetguard.protocol.scan_report`); the
hosts and services here fill in as probes answer, and :meth:`ScanReport.to_wire` turns the
whole into the ``fleetguard.scan/1`` document (docs/scan-checks.md).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from fleetguard.core.severity import Severity
from fleetguard.protocol.models import TransportProto
from fleetguard.protocol.scan_report import (
    SCAN_REPORT_SCHEMA,
    HostStatus,
    PortState,
    ReportFinding,
    ReportHost,
    ReportNote,
    ReportPort,
    ReportService,
    ScanReportDocument,
)


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
    transport: TransportProto


@dataclass(slots=True)
class ServiceInfo:
    port: int
    transport: TransportProto
    service: Service
    tls: bool = False
    product: str | None = None
    version: str | None = None
    vendor: str | None = None
    model: str | None = None
    banner: str | None = None
    extra: dict[str, str] = field(default_factory=dict)

    def to_wire(self) -> ReportService:
        # Built, not validated: the scanner's own data goes out as seen (the reader bounds it).
        return ReportService.model_construct(
            port=self.port, protocol=self.transport,
            service=self.service.value, product=self.product, version=self.version,
            tls=self.tls, vendor=self.vendor, model=self.model, banner=self.banner,
            extra=dict(sorted(self.extra.items())),
        )  # fmt: skip


@dataclass(slots=True)
class PortResult:
    port: int
    transport: TransportProto
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

    def to_wire(self) -> ReportHost:
        """The host as reported: closed ports only counted, the rest listed in order."""
        counts = {state: 0 for state in PortState}
        for p in self.ports:
            counts[p.state] += 1
        listed = sorted(
            (p for p in self.ports if p.state is not PortState.CLOSED),
            key=lambda p: (p.transport.value, p.port),
        )
        return ReportHost.model_construct(
            address=self.target.address, hostname=self.target.name, status=self.status,
            services=tuple(s.to_wire() for s in sorted(self.services, key=_service_key)),
            ports=tuple(
                ReportPort.model_construct(port=p.port, protocol=p.transport,
                                           state=p.state, reason=p.reason)
                for p in listed
            ),
            counts={state.value: n for state, n in counts.items()},
        )  # fmt: skip


def _service_key(s: ServiceInfo) -> tuple[str, int]:
    return (s.transport.value, s.port)


@dataclass(slots=True)
class ScanReport:
    targets: list[str]
    started: dt.datetime
    finished: dt.datetime
    hosts: list[HostResult]
    findings: list[ReportFinding]
    notes: list[ReportNote]
    options: dict[str, Any] = field(default_factory=dict)

    def worst_severity(self) -> Severity | None:
        if not self.findings:
            return None
        return max((f.severity for f in self.findings), key=lambda s: s.rank)

    def findings_at_or_above(self, severity: Severity) -> list[ReportFinding]:
        return [f for f in self.findings if f.severity.rank >= severity.rank]

    def to_wire(self) -> ScanReportDocument:
        """The ``fleetguard.scan/1`` document of this report."""
        return ScanReportDocument.model_construct(
            schema_=SCAN_REPORT_SCHEMA, targets=tuple(self.targets), started=self.started,
            finished=self.finished, options=dict(self.options),
            hosts=tuple(h.to_wire() for h in self.hosts), findings=tuple(self.findings),
            notes=tuple(self.notes),
        )  # fmt: skip


__all__ = [
    "HostResult",
    "PortResult",
    "PortSpec",
    "ScanReport",
    "Service",
    "ServiceInfo",
    "Severity",
    "Target",
]
