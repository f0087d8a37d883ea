"""Matching a scan's hosts to devices looks up only what the scan names (SQLite and
PostgreSQL), and only whole addresses."""

from __future__ import annotations

from fleetguard.findings import MatchMethod, scan_hosts
from fleetguard.store import Database
from tests.findings.reports import finding, host, report
from tests.findings.support import device_at, ingest_document

TELNET = ("tcp", 23, "telnet")


def _matches(db: Database, addresses: list[str]) -> dict[str, tuple[str | None, MatchMethod]]:
    doc = report([host(a, open_ports=(TELNET,)) for a in addresses],
                 [finding(a, 23, "cleartext-protocol") for a in addresses])
    scan = ingest_document(db, doc)
    with db.read_session() as session:
        return {h.address: (h.device_id, h.matched_by) for h in scan_hosts(session, scan.id)}


def test_a_scan_naming_three_hosts_matches_exactly_their_devices(db: Database) -> None:
    fleet = {f"10.1.{i // 200}.{i % 200 + 1}": device_at(db, f"cam-{i}", f"10.1.{i // 200}.{i % 200 + 1}")
             for i in range(300)}
    named = ["10.1.0.7", "10.1.1.50", "10.1.0.199"]

    matched = _matches(db, named)

    assert matched == {a: (fleet[a], MatchMethod.ADDRESS) for a in named}


def test_an_address_matches_only_a_device_listing_that_whole_address(db: Database) -> None:
    device_at(db, "ten", "10.0.0.10")
    device_at(db, "hundred", "10.0.0.100")

    matched = _matches(db, ["10.0.0.1"])

    assert matched == {"10.0.0.1": (None, MatchMethod.UNMATCHED)}
