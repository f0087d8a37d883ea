"""Validate a scan report document (``fleetguard.scan/1``, docs/scan-checks.md).

The same parser serves reports uploaded over the API and reports of scans the server ran
itself. Unknown fields are refused (the format is versioned by its ``schema``), lengths and
counts are bounded, addresses must be IP addresses.
"""

from __future__ import annotations

import ipaddress
import json
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from fleetguard.findings.errors import InvalidReportError, ReportTooLargeError
from fleetguard.findings.models import (
    ReportFinding,
    ReportHost,
    ReportNote,
    ReportPort,
    ReportService,
    ScanDocument,
    Severity,
)

SCHEMA = "fleetguard.scan/1"
#: The largest report accepted, as JSON text (a /16 with many findings stays well below).
MAX_REPORT_BYTES = 32 * 1024 * 1024
MAX_HOSTS = 65536
MAX_FINDINGS = 200_000

Port = Annotated[int, Field(ge=1, le=65535)]
Protocol = Literal["tcp", "udp"]
ShortText = Annotated[str, Field(max_length=200)]
Name = Annotated[str, Field(min_length=1, max_length=32, pattern=r"^[a-z0-9][a-z0-9._-]*$")]
CheckName = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[a-z0-9][a-z0-9-]*$")]


def _address(value: str) -> str:
    try:
        return str(ipaddress.ip_address(value.strip()))
    except ValueError:
        raise ValueError(f"not an IP address: {value[:60]!r}") from None


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _Service(_Model):
    port: Port
    protocol: Protocol
    service: Name
    product: str | None = Field(default=None, max_length=500)
    version: str | None = Field(default=None, max_length=200)
    tls: bool = False
    vendor: str | None = Field(default=None, max_length=500)
    model: str | None = Field(default=None, max_length=500)
    banner: str | None = Field(default=None, max_length=4000)
    extra: dict[Annotated[str, Field(max_length=64)], Annotated[str, Field(max_length=2000)]] = (
        Field(default_factory=dict, max_length=64)
    )


class _Port(_Model):
    port: Port
    protocol: Protocol
    state: Literal["open", "closed", "filtered", "open|filtered"]
    reason: str = Field(default="", max_length=1000)


class _Host(_Model):
    address: str = Field(max_length=64)
    hostname: str | None = Field(default=None, max_length=255)
    status: Literal["up", "no-response"]
    services: list[_Service] = Field(default_factory=list, max_length=2 * 65535)
    ports: list[_Port] = Field(default_factory=list, max_length=2 * 65535)
    counts: dict[Annotated[str, Field(max_length=32)], int] = Field(
        default_factory=dict, max_length=16
    )

    _addr = field_validator("address")(_address)


class _Finding(_Model):
    host: str = Field(max_length=64)
    port: Port
    protocol: Protocol
    service: Name
    check: CheckName
    severity: Severity
    title: str = Field(max_length=500)
    evidence: str = Field(max_length=20000)
    remediation: str = Field(max_length=10000)
    references: list[ShortText] = Field(default_factory=list, max_length=100)

    _addr = field_validator("host")(_address)


class _Note(_Model):
    host: str = Field(max_length=64)
    port: int = Field(ge=0, le=65535)
    protocol: Protocol
    check: Annotated[str, Field(max_length=64)]
    reason: str = Field(max_length=2000)

    _addr = field_validator("host")(_address)


class _Document(_Model):
    schema_: Literal["fleetguard.scan/1"] = Field(alias="schema")
    targets: list[Annotated[str, Field(max_length=300)]] = Field(max_length=10000)
    started: datetime
    finished: datetime
    options: dict[Annotated[str, Field(max_length=64)], Any] = Field(
        default_factory=dict, max_length=64
    )
    hosts: list[_Host] = Field(max_length=MAX_HOSTS)
    findings: list[_Finding] = Field(max_length=MAX_FINDINGS)
    notes: list[_Note] = Field(default_factory=list, max_length=MAX_FINDINGS)

    @field_validator("started", "finished")
    @classmethod
    def _aware(cls, value: datetime) -> datetime:
        if value.tzinfo is None:
            raise ValueError("timestamps need a time zone (ISO 8601 with an offset)")
        return value


def _where(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "report"


def parse_report_document(document: object) -> ScanDocument:
    """A validated ScanDocument, or InvalidReportError naming the first bad field."""
    if not isinstance(document, dict):
        raise InvalidReportError("a report is a JSON object", field="report")
    size = len(json.dumps(document, separators=(",", ":"), ensure_ascii=False, default=str))
    if size > MAX_REPORT_BYTES:
        raise ReportTooLargeError(f"report over {MAX_REPORT_BYTES} bytes of JSON")
    try:
        doc = _Document.model_validate(document)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        where = _where(tuple(first.get("loc", ())))
        raise InvalidReportError(
            f"report.{where}: {first.get('msg', 'invalid value')}", field=f"report.{where}"
        ) from None
    if doc.finished < doc.started:
        raise InvalidReportError("report.finished is before report.started",
                                 field="report.finished")
    return ScanDocument(
        targets=tuple(doc.targets),
        started=doc.started,
        finished=doc.finished,
        options=dict(doc.options),
        hosts=tuple(
            ReportHost(
                address=h.address,
                hostname=h.hostname,
                status=h.status,
                services=tuple(
                    ReportService(
                        port=s.port, protocol=s.protocol, service=s.service, tls=s.tls,
                        product=s.product, version=s.version, vendor=s.vendor, model=s.model,
                        banner=s.banner, extra=dict(s.extra),
                    )
                    for s in h.services
                ),
                ports=tuple(ReportPort(p.port, p.protocol, p.state) for p in h.ports),
            )
            for h in doc.hosts
        ),
        findings=tuple(
            ReportFinding(
                host=f.host, port=f.port, protocol=f.protocol, service=f.service, check=f.check,
                severity=f.severity, title=f.title, evidence=f.evidence,
                remediation=f.remediation, references=tuple(f.references),
            )
            for f in doc.findings
        ),
        notes=tuple(ReportNote(n.host, n.port, n.protocol, n.check, n.reason) for n in doc.notes),
        raw=document,
    )


__all__ = ["MAX_REPORT_BYTES", "SCHEMA", "parse_report_document"]
