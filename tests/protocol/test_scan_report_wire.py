"""The scan report's wire format (fleetguard.scan/1) is pinned: a renamed field, enum value
or version fails here before it breaks a published report or a server reading it."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from pydantic import BaseModel

from fleetguard.core.severity import Severity
from fleetguard.protocol import scan_report as wire
from fleetguard.protocol.models import TransportProto
from fleetguard.protocol.scan_report import (
    HostStatus,
    InvalidReportError,
    PortState,
    ReportTooLargeError,
    parse_scan_report,
)
from fleetguard.scan import ScanReport, Service, ServiceInfo, Target, report_document
from fleetguard.scan.models import HostResult, PortResult

AT = datetime(2026, 1, 1, 10, 0, tzinfo=UTC)


def _fields(model: type[BaseModel]) -> list[str]:
    return [f.alias or name for name, f in model.model_fields.items()]


def _scanner_report() -> ScanReport:
    cam = HostResult(Target("192.0.2.5"))
    cam.ports += [PortResult(23, TransportProto.TCP, PortState.OPEN),
                  PortResult(80, TransportProto.TCP, PortState.CLOSED),
                  PortResult(161, TransportProto.UDP, PortState.OPEN_FILTERED, "no answer")]
    cam.services.append(ServiceInfo(23, TransportProto.TCP, Service.TELNET, banner="BusyBox login:"))
    finding = wire.ReportFinding(
        host="192.0.2.5", port=23, protocol="tcp", service="telnet", check="cleartext-protocol",
        severity=Severity.HIGH, title="Cleartext", evidence="telnet answered",
        remediation="turn it off", references=("ETSI EN 303 645 5.5-1",),
    )
    note = wire.ReportNote(host="192.0.2.5", port=161, protocol="udp",
                           check="snmp-default-community", reason="no answer")
    return ScanReport(targets=["192.0.2.5"], started=AT, finished=AT, hosts=[cam],
                      findings=[finding], notes=[note], options={"credentials": True})


def test_version_and_limits_are_pinned() -> None:
    assert wire.SCAN_REPORT_SCHEMA == "fleetguard.scan/1"
    assert sorted(wire.SUPPORTED_SCAN_REPORT_SCHEMAS) == ["fleetguard.scan/1"]
    assert (wire.MAX_REPORT_BYTES, wire.MAX_HOSTS, wire.MAX_FINDINGS) == (32 * 2**20, 65536, 200_000)


def test_enum_values_are_pinned() -> None:
    assert [s.value for s in PortState] == ["open", "closed", "filtered", "open|filtered"]
    assert [s.value for s in HostStatus] == ["up", "no-response"]
    assert [s.value for s in Severity] == ["critical", "high", "medium", "low", "info"]


def test_field_names_are_pinned() -> None:
    assert _fields(wire.ScanReportDocument) == [
        "schema", "targets", "started", "finished", "options", "hosts", "findings", "notes"]
    assert _fields(wire.ReportHost) == [
        "address", "hostname", "status", "services", "ports", "counts"]
    assert _fields(wire.ReportService) == [
        "port", "protocol", "service", "product", "version", "tls", "vendor", "model", "banner",
        "extra"]
    assert _fields(wire.ReportPort) == ["port", "protocol", "state", "reason"]
    assert _fields(wire.ReportFinding) == [
        "host", "port", "protocol", "service", "check", "severity", "title", "evidence",
        "remediation", "references"]
    assert _fields(wire.ReportNote) == ["host", "port", "protocol", "check", "reason"]


def test_error_codes_are_pinned() -> None:
    assert (InvalidReportError.code, ReportTooLargeError.code) == ("invalid_report",
                                                                   "report_too_large")


def test_the_scanner_writes_the_documented_json() -> None:
    assert report_document(_scanner_report()) == {
        "schema": "fleetguard.scan/1",
        "targets": ["192.0.2.5"],
        "started": "2026-01-01T10:00:00+00:00",
        "finished": "2026-01-01T10:00:00+00:00",
        "options": {"credentials": True},
        "hosts": [{
            "address": "192.0.2.5", "hostname": None, "status": "up",
            "services": [{"port": 23, "protocol": "tcp", "service": "telnet", "product": None,
                          "version": None, "tls": False, "banner": "BusyBox login:"}],
            "ports": [{"port": 23, "protocol": "tcp", "state": "open"},
                      {"port": 161, "protocol": "udp", "state": "open|filtered",
                       "reason": "no answer"}],
            "counts": {"open": 1, "closed": 1, "filtered": 0, "open|filtered": 1},
        }],
        "findings": [{
            "host": "192.0.2.5", "port": 23, "protocol": "tcp", "service": "telnet",
            "check": "cleartext-protocol", "severity": "high", "title": "Cleartext",
            "evidence": "telnet answered", "remediation": "turn it off",
            "references": ["ETSI EN 303 645 5.5-1"],
        }],
        "notes": [{"host": "192.0.2.5", "port": 161, "protocol": "udp",
                   "check": "snmp-default-community", "reason": "no answer"}],
    }  # fmt: skip


def test_what_the_scanner_writes_the_server_reads_back_unchanged() -> None:
    document = report_document(_scanner_report())
    assert parse_scan_report(document).to_json_dict() == document


def test_an_unknown_version_is_refused_by_name() -> None:
    document = report_document(_scanner_report()) | {"schema": "fleetguard.scan/2"}
    with pytest.raises(InvalidReportError) as refused:
        parse_scan_report(document)
    assert refused.value.field == "report.schema"
    assert "'fleetguard.scan/2'" in refused.value.message
    assert "fleetguard.scan/1" in refused.value.message


def test_a_document_without_a_version_is_refused() -> None:
    document = report_document(_scanner_report())
    del document["schema"]
    with pytest.raises(InvalidReportError) as refused:
        parse_scan_report(document)
    assert refused.value.field == "report.schema" and "no schema" in refused.value.message
