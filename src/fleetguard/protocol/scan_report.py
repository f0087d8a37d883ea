"""The scan report, ``fleetguard.scan/1`` (docs/scan-checks.md): one definition for both sides.

``fleetguard scan --json`` (and ``--server``) writes it, the server reads it (an upload, or
a scan it ran itself); a finding here is a *reported* finding: what one scan saw, with no
lifecycle (the server's stored finding, open or resolved across scans, is another thing).

Reading is strict: :func:`parse_scan_report` refuses an unknown ``schema`` by name, unknown
fields, over-long strings and lists, and addresses that are not IP addresses, and says which
field. Fields are only ever added within a version; a change that is not an addition is a
new ``schema`` string. Services omit ``vendor``, ``model``, ``banner`` and ``extra`` when
empty, and ports omit ``reason``.
"""

from __future__ import annotations

import ipaddress
import json
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Final, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    ValidationError,
    field_serializer,
    field_validator,
    model_serializer,
)

from fleetguard.core.errors import PayloadTooLargeError, ValidationFailedError
from fleetguard.core.severity import Severity
from fleetguard.protocol.models import TransportProto

SCAN_REPORT_SCHEMA: Final = "fleetguard.scan/1"
SUPPORTED_SCAN_REPORT_SCHEMAS = frozenset({SCAN_REPORT_SCHEMA})

# Limits of version 1 (a /16 with many findings stays well below them).
MAX_REPORT_BYTES = 32 * 1024 * 1024  # as compact JSON text
MAX_HOSTS = 65536
MAX_FINDINGS = 200_000

Port = Annotated[int, Field(ge=1, le=65535)]
ShortText = Annotated[str, Field(max_length=200)]
ServiceName = Annotated[
    str, Field(min_length=1, max_length=32, pattern=r"^[a-z0-9][a-z0-9._-]*$")
]
CheckName = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[a-z0-9][a-z0-9-]*$")]


class PortState(StrEnum):
    """A listed port's ``state``. Wire values are stable (pinned by a test)."""

    OPEN = "open"
    CLOSED = "closed"
    FILTERED = "filtered"  # no answer within the timeout (TCP)
    OPEN_FILTERED = "open|filtered"  # UDP: no answer to any probe; cannot tell


class HostStatus(StrEnum):
    """A host's ``status``. Wire values are stable (pinned by a test)."""

    UP = "up"  # at least one port answered (open or closed)
    NO_RESPONSE = "no-response"  # every probe timed out: down, or firewalled


class InvalidReportError(ValidationFailedError):
    """A document that is not a valid scan report; ``field`` names the first bad field."""

    code = "invalid_report"


class ReportTooLargeError(PayloadTooLargeError):
    code = "report_too_large"


def _ip_address(value: str) -> str:
    try:
        return str(ipaddress.ip_address(value.strip()))
    except ValueError:
        raise ValueError(f"not an IP address: {value[:60]!r}") from None


class _WireModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _without_empty(data: dict[str, Any], names: tuple[str, ...]) -> dict[str, Any]:
    return {k: v for k, v in data.items() if k not in names or v}


class ReportService(_WireModel):
    port: Port
    protocol: TransportProto
    service: ServiceName
    product: str | None = Field(default=None, max_length=500)
    version: str | None = Field(default=None, max_length=200)
    tls: bool = False
    vendor: str | None = Field(default=None, max_length=500)
    model: str | None = Field(default=None, max_length=500)
    banner: str | None = Field(default=None, max_length=4000)
    extra: dict[Annotated[str, Field(max_length=64)], Annotated[str, Field(max_length=2000)]] = (
        Field(default_factory=dict, max_length=64)
    )

    @model_serializer(mode="wrap")
    def _omit_empty(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        return _without_empty(handler(self), ("vendor", "model", "banner", "extra"))


class ReportPort(_WireModel):
    port: Port
    protocol: TransportProto
    state: PortState
    reason: str = Field(default="", max_length=1000)

    @model_serializer(mode="wrap")
    def _omit_empty(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        return _without_empty(handler(self), ("reason",))


class ReportHost(_WireModel):
    address: str = Field(max_length=64)
    hostname: str | None = Field(default=None, max_length=255)
    status: HostStatus
    services: tuple[ReportService, ...] = Field(default=(), max_length=2 * 65535)
    ports: tuple[ReportPort, ...] = Field(default=(), max_length=2 * 65535)
    counts: dict[Annotated[str, Field(max_length=32)], int] = Field(
        default_factory=dict, max_length=16
    )

    _address = field_validator("address")(_ip_address)


class ReportFinding(_WireModel):
    """One weakness one scan saw on one host and port."""

    host: str = Field(max_length=64)
    port: Port
    protocol: TransportProto
    service: ServiceName
    check: CheckName
    severity: Severity
    title: str = Field(max_length=500)
    evidence: str = Field(max_length=20000)
    remediation: str = Field(max_length=10000)
    references: tuple[ShortText, ...] = Field(default=(), max_length=100)

    _host = field_validator("host")(_ip_address)


class ReportNote(_WireModel):
    """A check that could not be run or could not decide there: never silently dropped."""

    host: str = Field(max_length=64)
    port: int = Field(ge=0, le=65535)
    protocol: TransportProto
    check: str = Field(max_length=64)
    reason: str = Field(max_length=2000)

    _host = field_validator("host")(_ip_address)


class ScanReportDocument(_WireModel):
    """A whole report: what was asked, every host, every finding and note."""

    schema_: Literal["fleetguard.scan/1"] = Field(alias="schema")
    targets: tuple[Annotated[str, Field(max_length=300)], ...] = Field(max_length=10000)
    started: datetime
    finished: datetime
    options: dict[Annotated[str, Field(max_length=64)], Any] = Field(
        default_factory=dict, max_length=64
    )
    hosts: tuple[ReportHost, ...] = Field(max_length=MAX_HOSTS)
    findings: tuple[ReportFinding, ...] = Field(max_length=MAX_FINDINGS)
    notes: tuple[ReportNote, ...] = Field(default=(), max_length=MAX_FINDINGS)

    @field_validator("started", "finished")
    @classmethod
    def _aware(cls, value: datetime) -> datetime:
        if value.tzinfo is None:
            raise ValueError("timestamps need a time zone (ISO 8601 with an offset)")
        return value

    @field_serializer("started", "finished")
    def _iso(self, value: datetime) -> str:
        return value.isoformat()  # "+00:00", as version 1 has always written it

    @property
    def credentials_used(self) -> bool:
        """Whether the scan tried logins (else it cannot tell a default credential is gone)."""
        return self.options.get("credentials") is True

    def to_json_dict(self) -> dict[str, Any]:
        """The document as JSON-ready data, in the field order of the format."""
        return self.model_dump(mode="json", by_alias=True)


def _where(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "report"


def _check_schema(document: dict[str, Any]) -> None:
    schema = document.get("schema")
    if schema not in SUPPORTED_SCAN_REPORT_SCHEMAS:
        known = ", ".join(sorted(SUPPORTED_SCAN_REPORT_SCHEMAS))
        said = "no schema" if schema is None else f"schema {str(schema)[:60]!r}"
        raise InvalidReportError(
            f"report.schema: {said} is not a scan report version this side reads ({known})",
            field="report.schema",
        )


def parse_scan_report(document: object) -> ScanReportDocument:
    """A validated report, or InvalidReportError naming the first bad field
    (ReportTooLargeError over :data:`MAX_REPORT_BYTES`)."""
    if not isinstance(document, dict):
        raise InvalidReportError("a report is a JSON object", field="report")
    size = len(json.dumps(document, separators=(",", ":"), ensure_ascii=False, default=str))
    if size > MAX_REPORT_BYTES:
        raise ReportTooLargeError(f"report over {MAX_REPORT_BYTES} bytes of JSON")
    _check_schema(document)
    try:
        report = ScanReportDocument.model_validate(document)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        where = _where(tuple(first.get("loc", ())))
        raise InvalidReportError(
            f"report.{where}: {first.get('msg', 'invalid value')}", field=f"report.{where}"
        ) from None
    if report.finished < report.started:
        raise InvalidReportError(
            "report.finished is before report.started", field="report.finished"
        )
    return report


__all__ = [
    "MAX_FINDINGS",
    "MAX_HOSTS",
    "MAX_REPORT_BYTES",
    "SCAN_REPORT_SCHEMA",
    "SUPPORTED_SCAN_REPORT_SCHEMAS",
    "HostStatus",
    "InvalidReportError",
    "PortState",
    "ReportFinding",
    "ReportHost",
    "ReportNote",
    "ReportPort",
    "ReportService",
    "ReportTooLargeError",
    "ScanReportDocument",
    "parse_scan_report",
]
