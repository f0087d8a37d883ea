"""Findings across rescans: open, update, resolve, reopen; matching; what a scan covers.

Runs on SQLite and PostgreSQL (the ``db`` fixture).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from fleetguard.auditlog import list_audit_entries, verify_chain
from fleetguard.findings import (
    FindingFilter,
    FindingState,
    MatchMethod,
    ScanStatus,
    Severity,
    close_findings_of_decommissioned_device,
    count_findings_by_severity,
    devices_with_open_check,
    list_findings,
    scan_hosts,
    scan_report,
)
from fleetguard.protocol.scan_report import InvalidReportError, parse_scan_report
from fleetguard.registry import DeviceChanges
from fleetguard.registry import service as registry
from fleetguard.store import Database
from tests.findings.reports import finding, host, report
from tests.findings.support import device_at, ingest_document

CAM = "127.0.0.21"
GW = "127.0.0.22"
STRAY = "127.0.0.23"
TELNET = ("tcp", 23, "telnet")
HTTP = ("tcp", 80, "http")


def _findings(db: Database, **kw: Any) -> dict[tuple[str, int, str], Any]:
    with db.read_session() as session:
        page = list_findings(session, FindingFilter(**kw), limit=500)
    return {(f.host, f.port, f.check): f for f in page.findings}


def test_open_update_resolve_reopen(db: Database) -> None:
    cam = device_at(db, "cam-1", CAM)
    creds = finding(CAM, 23, "default-credentials", evidence="root:x***1")
    clear = finding(CAM, 23, "cleartext-protocol")
    web = finding(CAM, 80, "no-authentication", service="http")

    first = ingest_document(db, report([host(CAM, open_ports=(TELNET, HTTP))], [creds, clear, web]))
    assert first.status is ScanStatus.FINISHED
    assert first.outcome is not None
    assert (first.outcome.opened, first.outcome.resolved, first.outcome.hosts_matched) == (3, 0, 1)
    found = _findings(db, device_id=cam)
    assert {k[2] for k in found} == {"default-credentials", "cleartext-protocol", "no-authentication"}
    assert all(f.state is FindingState.OPEN and f.matched_by is MatchMethod.ADDRESS
               for f in found.values())

    # Rescan: the web page now asks for a login, telnet still takes the default password.
    creds2 = finding(CAM, 23, "default-credentials", evidence="admin:a***n", severity="critical")
    second = ingest_document(db, report([host(CAM, open_ports=(TELNET, HTTP))], [creds2, clear]))
    assert second.outcome is not None
    assert (second.outcome.opened, second.outcome.updated, second.outcome.resolved) == (0, 2, 1)
    found = _findings(db, device_id=cam)
    assert found[(CAM, 80, "no-authentication")].state is FindingState.RESOLVED
    assert found[(CAM, 80, "no-authentication")].resolved_at is not None
    assert found[(CAM, 23, "default-credentials")].evidence == "admin:a***n"
    assert found[(CAM, 23, "default-credentials")].last_scan_id == second.id
    assert found[(CAM, 23, "default-credentials")].first_scan_id == first.id

    # It comes back.
    third = ingest_document(db, report([host(CAM, open_ports=(TELNET, HTTP))], [creds2, clear, web]))
    assert third.outcome is not None
    assert (third.outcome.reopened, third.outcome.resolved) == (1, 0)
    again = _findings(db, device_id=cam)[(CAM, 80, "no-authentication")]
    assert again.state is FindingState.OPEN and again.reopened == 1 and again.resolved_at is None

    with db.read_session() as session:
        actions = [e.action for e in list_audit_entries(session, limit=100)]
        assert actions.count("scan.ingest") == 3
        assert actions.count("finding.resolve") == 1 and actions.count("finding.reopen") == 1
        assert verify_chain(session).ok
        assert scan_report(session, first.id)["findings"][0]["check"] == "default-credentials"


def test_unmatched_hosts_and_adoption_when_a_device_appears(db: Database) -> None:
    doc = report([host(STRAY, open_ports=(TELNET,))], [finding(STRAY, 23, "cleartext-protocol")])
    scan = ingest_document(db, doc)
    assert scan.outcome is not None and scan.outcome.hosts_unmatched == 1
    with db.read_session() as session:
        (h,) = scan_hosts(session, scan.id)
        assert h.matched_by is MatchMethod.UNMATCHED and h.device_id is None
    (f,) = _findings(db, unmatched=True).values()
    assert f.subject == f"host:{STRAY}" and f.device_id is None

    # The host gets registered: the next scan moves its history to the device.
    dev = device_at(db, "stray", STRAY)
    again = ingest_document(db, doc)
    assert again.outcome is not None and again.outcome.updated == 1 and again.outcome.opened == 0
    (g,) = _findings(db, device_id=dev).values()
    assert g.id == f.id and g.subject == f"device:{dev}" and g.matched_by is MatchMethod.ADDRESS
    assert not _findings(db, unmatched=True)


def test_serial_from_a_banner_wins_over_the_address(db: Database) -> None:
    by_address = device_at(db, "old-owner-of-address", GW)
    by_serial = device_at(db, "gateway", "127.0.0.99", serial="SN-12345")
    doc = report([host(GW, open_ports=(TELNET,), serial="SN-12345")],
                 [finding(GW, 23, "cleartext-protocol")])
    scan = ingest_document(db, doc)
    with db.read_session() as session:
        (h,) = scan_hosts(session, scan.id)
    assert h.device_id == by_serial and h.matched_by is MatchMethod.SERIAL
    assert _findings(db, device_id=by_serial) and not _findings(db, device_id=by_address)


def test_ambiguous_address_is_not_guessed(db: Database) -> None:
    device_at(db, "a", "127.0.0.30")
    device_at(db, "b", "127.0.0.30")
    scan = ingest_document(db, report([host("127.0.0.30", open_ports=(TELNET,))],
                              [finding("127.0.0.30", 23, "cleartext-protocol")]))
    with db.read_session() as session:
        (h,) = scan_hosts(session, scan.id)
    assert h.matched_by is MatchMethod.AMBIGUOUS and h.device_id is None


def test_a_host_not_covered_keeps_its_findings_open(db: Database) -> None:
    cam, gw = device_at(db, "cam", CAM), device_at(db, "gw", GW)
    ingest_document(db, report([host(CAM, open_ports=(TELNET,)), host(GW, open_ports=(TELNET,))],
                       [finding(CAM, 23, "cleartext-protocol"), finding(GW, 23, "cleartext-protocol")]))

    # Rescan of the camera only; the gateway was not a target.
    out = ingest_document(db, report([host(CAM, open_ports=(TELNET,))], [finding(CAM, 23, "cleartext-protocol")]))
    assert out.outcome is not None and out.outcome.resolved == 0
    # The gateway is a target but does not answer at all: nothing is resolved either.
    out = ingest_document(db, report([host(CAM, open_ports=(TELNET,)), host(GW, up=False)],
                             [finding(CAM, 23, "cleartext-protocol")]))
    assert out.outcome is not None and out.outcome.resolved == 0
    assert _findings(db, device_id=gw)[(GW, 23, "cleartext-protocol")].state is FindingState.OPEN
    assert _findings(db, device_id=cam)[(CAM, 23, "cleartext-protocol")].state is FindingState.OPEN


def test_only_covered_ports_and_checks_resolve(db: Database) -> None:
    cam = device_at(db, "cam", CAM)
    ingest_document(db, report([host(CAM, open_ports=(TELNET, HTTP, ("udp", 161, "snmp")))],
                       [finding(CAM, 23, "default-credentials"), finding(CAM, 23, "cleartext-protocol"),
                        finding(CAM, 80, "no-authentication", service="http"),
                        finding(CAM, 161, "snmp-default-community", protocol="udp", service="snmp")]))
    # Up, but: port 23 filtered this time, port 80 absent from the report (closed, or not
    # scanned: unknown without the port list), SNMP open but no credentials were tried.
    doc = report([host(CAM, open_ports=(("udp", 161, "snmp"),), silent=(("tcp", 23),))], [],
                 credentials=False)
    out = ingest_document(db, doc)
    assert out.outcome is not None and (out.outcome.resolved, out.outcome.kept_open) == (0, 4)

    # With the port list, a closed port 80 counts as covered.
    out = ingest_document(db, doc, ports=frozenset({("tcp", 23), ("tcp", 80), ("udp", 161)}))
    assert out.outcome is not None and out.outcome.resolved == 1
    state = {k[2]: f.state for k, f in _findings(db, device_id=cam).items()}
    assert state["no-authentication"] is FindingState.RESOLVED
    assert state["default-credentials"] is FindingState.OPEN
    assert state["snmp-default-community"] is FindingState.OPEN

    # A note that the check could not run there keeps it open too.
    note = {"host": CAM, "port": 23, "protocol": "tcp", "check": "default-credentials",
            "reason": "login prompt timed out"}
    out = ingest_document(db, report([host(CAM, open_ports=(TELNET,))], [finding(CAM, 23, "cleartext-protocol")],
                             notes=[note]))
    assert out.outcome is not None and out.outcome.resolved == 0
    assert _findings(db, device_id=cam)[(CAM, 23, "default-credentials")].state is FindingState.OPEN


def test_counts_and_devices_with_a_check(db: Database) -> None:
    cam, gw = device_at(db, "cam", CAM), device_at(db, "gw", GW)
    ingest_document(db, report([host(CAM, open_ports=(TELNET,)), host(GW, open_ports=(TELNET,)),
                        host(STRAY, open_ports=(TELNET,))],
                       [finding(CAM, 23, "default-credentials"), finding(GW, 23, "cleartext-protocol"),
                        finding(STRAY, 23, "default-credentials"),
                        finding(CAM, 23, "service-exposed")]))
    with db.read_session() as session:
        counts = count_findings_by_severity(session)
        assert counts[Severity.CRITICAL] == 2 and counts[Severity.HIGH] == 1
        assert counts[Severity.INFO] == 1 and counts[Severity.LOW] == 0
        assert count_findings_by_severity(session, device_id=gw)[Severity.HIGH] == 1
        weak = devices_with_open_check(session, "default-credentials")
        assert [d.device_id for d in weak] == [cam]  # the stray host is no device
        assert weak[0].worst is Severity.CRITICAL and weak[0].last_seen_at.tzinfo is not None


def test_pagination_is_worst_first_and_complete(db: Database) -> None:
    findings = [finding(CAM, p, "service-exposed", severity=s)
                for p, s in zip(range(1000, 1012), ["info", "low", "high", "critical"] * 3, strict=True)]
    ingest_document(db, report([host(CAM)], findings))
    seen: list[Any] = []
    cursor = None
    with db.read_session() as session:
        while True:
            page = list_findings(session, cursor=cursor, limit=5)
            seen.extend(page.findings)
            cursor = page.next_cursor
            if cursor is None:
                break
    assert len(seen) == 12 and len({f.id for f in seen}) == 12
    ranks = [f.severity.rank for f in seen]
    assert ranks == sorted(ranks, reverse=True)


@pytest.mark.parametrize(("mutate", "where"), [
    (lambda d: d.update(schema="other/2"), "schema"),
    (lambda d: d.update(surprise=1), "surprise"),
    (lambda d: d["findings"][0].update(severity="apocalyptic"), "findings[0].severity"),
    (lambda d: d["findings"][0].update(host="not-an-ip"), "findings[0].host"),
    (lambda d: d["hosts"][0].update(status="maybe"), "hosts[0].status"),
    (lambda d: d["findings"][0].update(port=70000), "findings[0].port"),
    (lambda d: d.update(started="yesterday"), "started"),
    (lambda d: d.pop("hosts"), "hosts"),
])
def test_malformed_reports_are_refused_with_the_field(mutate: Any, where: str) -> None:
    doc = report([host(CAM, open_ports=(TELNET,))], [finding(CAM, 23, "cleartext-protocol")])
    mutate(doc)
    with pytest.raises(InvalidReportError) as info:
        parse_scan_report(doc)
    assert info.value.field == f"report.{where}"


def test_a_device_that_moved_is_followed(db: Database) -> None:
    cam = device_at(db, "cam", CAM)
    ingest_document(db, report([host(CAM, open_ports=(TELNET,))], [finding(CAM, 23, "cleartext-protocol")]))
    with db.session() as session:
        registry.update_device(session, cam, DeviceChanges(addresses=["127.0.0.40"]), actor="test")
    out = ingest_document(db, report([host("127.0.0.40", open_ports=(("tcp", 22, "ssh"),))], []),
                  ports=frozenset({("tcp", 22), ("tcp", 23)}))
    assert out.outcome is not None and out.outcome.resolved == 1


def test_stale_running_scans_fail(db: Database) -> None:
    from fleetguard.findings import ScanSource, create_scan, fail_stale_scans, get_scan

    with db.session() as session:
        scan = create_scan(session, actor="test", source=ScanSource.SERVER, targets=[CAM], options={})
    with db.session() as session:
        assert fail_stale_scans(session, silent_for=timedelta(hours=1), actor="test") == []
        assert fail_stale_scans(session, silent_for=timedelta(seconds=-1), actor="test") == [scan.id]
        assert get_scan(session, scan.id).status is ScanStatus.FAILED


def test_a_decommissioned_devices_open_findings_are_resolved_with_the_reason(db: Database) -> None:
    cam = device_at(db, "cam-gone", CAM)
    gw = device_at(db, "gw-stays", GW)
    ingest_document(db, report(
        [host(CAM, open_ports=(TELNET, HTTP)), host(GW, open_ports=(TELNET,))],
        [finding(CAM, 23, "cleartext-protocol"), finding(CAM, 80, "no-authentication", service="http"),
         finding(GW, 23, "cleartext-protocol")],
    ))
    with db.session() as session:
        before = sum(count_findings_by_severity(session).values())
        closed = close_findings_of_decommissioned_device(session, cam, actor="test")
    assert (before, closed) == (3, 2)
    assert all(f.state is FindingState.RESOLVED and f.resolved_at is not None
               for f in _findings(db, device_id=cam).values())
    assert [f.state for f in _findings(db, device_id=gw).values()] == [FindingState.OPEN]
    with db.read_session() as session:
        assert sum(count_findings_by_severity(session).values()) == 1
        entry = list_audit_entries(session, action="finding.resolve", limit=10)[-1]
        assert verify_chain(session).ok
    assert entry.target == f"device:{cam}"
    assert entry.details["reason"] == "device decommissioned" and entry.details["count"] == 2


def test_a_device_without_open_findings_closes_nothing_and_audits_nothing(db: Database) -> None:
    cam = device_at(db, "cam-clean", CAM)
    with db.session() as session:
        assert close_findings_of_decommissioned_device(session, cam, actor="test") == 0
        assert list_audit_entries(session, action="finding.resolve", limit=10) == []
