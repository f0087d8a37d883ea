"""Devices and scan reports in the database, for findings tests and the dashboard's."""

from __future__ import annotations

from typing import Any

from fleetguard.findings import Scan, ingest_report
from fleetguard.protocol.scan_report import parse_scan_report
from fleetguard.registry import DeviceChanges
from fleetguard.registry import service as registry
from fleetguard.store import Database


def device_at(db: Database, name: str, address: str, serial: str | None = None) -> str:
    """A registered device known at ``address``; its id."""
    with db.session() as session:
        d = registry.register_device(session, name=name, actor="test", serial=serial)
        registry.update_device(session, d.id, DeviceChanges(addresses=[address]), actor="test")
        return d.id


def ingest_document(db: Database, doc: dict[str, Any],
                    ports: frozenset[tuple[str, int]] | None = None) -> Scan:
    """Store a fleetguard.scan/1 document the way `fleetguard scan --server` does."""
    with db.session() as session:
        return ingest_report(session, parse_scan_report(doc), actor="test:scanner",
                             scanned_ports=ports)
