"""Fleet-wide figures from open findings, on SQLite and PostgreSQL: devices with a check
open, the fleet risk score and its stored hourly history."""

from __future__ import annotations

from datetime import timedelta

from fleetguard.core.clock import utcnow
from fleetguard.findings import (
    Severity,
    count_devices_with_open_check,
    fleet_risk,
    open_finding_device_ids,
    record_risk_snapshot,
    risk_history,
)
from fleetguard.registry import DeviceState
from fleetguard.registry import service as registry
from fleetguard.store import Database
from tests.findings.reports import finding, host, report
from tests.findings.support import device_at, ingest_document

TELNET = ("tcp", 23, "telnet")


def _fleet_with_findings(db: Database) -> tuple[str, str, str]:
    cam = device_at(db, "cam", "127.0.0.31")
    gw = device_at(db, "gw", "127.0.0.32")
    quiet = device_at(db, "quiet", "127.0.0.33")
    ingest_document(db, report(
        [host("127.0.0.31", open_ports=(TELNET,)), host("127.0.0.32", open_ports=(TELNET,)),
         host("127.0.0.33")],
        [finding("127.0.0.31", 23, "default-credentials"),           # critical: 40
         finding("127.0.0.31", 23, "cleartext-protocol"),            # high: 20
         finding("127.0.0.32", 23, "cleartext-protocol"),            # high: 20
         finding("127.0.0.32", 23, "service-exposed")],              # info: 0
    ))
    return cam, gw, quiet


def test_devices_with_an_open_check_are_named_and_counted(db: Database) -> None:
    cam, gw, _ = _fleet_with_findings(db)
    with db.read_session() as s:
        assert open_finding_device_ids(s, check="default-credentials") == {cam}
        assert open_finding_device_ids(s, check="cleartext-protocol") == {cam, gw}
        assert open_finding_device_ids(s, min_severity=Severity.CRITICAL) == {cam}
        assert count_devices_with_open_check(s, "cleartext-protocol") == 2
        assert count_devices_with_open_check(s, "snmp-default-community") == 0


def test_fleet_risk_is_the_mean_capped_device_risk(db: Database) -> None:
    _fleet_with_findings(db)
    with db.read_session() as s:
        risk = fleet_risk(s)
    # cam 40 + 20, gateway 20 + 0, quiet 0: (60 + 20 + 0) / 3
    assert risk.score == 26.7 and risk.devices == 3 and risk.devices_at_risk == 2
    assert risk.open_findings[Severity.HIGH] == 2


def test_device_risk_is_capped_at_100(db: Database) -> None:
    device_at(db, "bad", "127.0.0.41")
    ingest_document(db, report([host("127.0.0.41", open_ports=(TELNET,))],
                       [finding("127.0.0.41", port, "default-credentials")
                        for port in (21, 22, 23, 80)]))
    with db.read_session() as s:
        assert fleet_risk(s).score == 100.0


def test_decommissioned_devices_leave_the_figure(db: Database) -> None:
    cam, _, _ = _fleet_with_findings(db)
    with db.session() as s:
        registry.set_device_state(s, cam, DeviceState.DECOMMISSIONED, actor="t")
    with db.read_session() as s:
        risk = fleet_risk(s)
    assert risk.devices == 2 and risk.score == 10.0


def test_an_empty_fleet_has_no_risk(db: Database) -> None:
    with db.read_session() as s:
        assert fleet_risk(s).score == 0.0


def test_each_ingestion_stores_the_hours_figure_and_history_reads_it_back(
    db: Database,
) -> None:
    _fleet_with_findings(db)
    with db.read_session() as s:
        history = risk_history(s, since=utcnow() - timedelta(days=1))
    assert [h.score for h in history] == [26.7]
    earlier = utcnow() - timedelta(hours=5)
    with db.session() as s:
        record_risk_snapshot(s, now=earlier)
        # the same hour again replaces its figure rather than adding one
        record_risk_snapshot(s, now=earlier + timedelta(seconds=1))
    with db.read_session() as s:
        history = risk_history(s, since=utcnow() - timedelta(days=1))
    assert len(history) == 2 and history[0].hour < history[1].hour


def test_the_periodic_snapshot_skips_while_the_stored_one_is_fresh(db: Database) -> None:
    _fleet_with_findings(db)
    with db.session() as s:
        assert record_risk_snapshot(s, unless_newer_than=timedelta(minutes=15)) is None
        later = utcnow() + timedelta(minutes=20)
        assert record_risk_snapshot(s, now=later, unless_newer_than=timedelta(minutes=15))
