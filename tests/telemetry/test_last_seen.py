"""The registry's last-seen and addresses have one writer: the telemetry ingest service."""

from __future__ import annotations

from fastapi import FastAPI

from fleetguard.core.clock import utcnow
from fleetguard.pki import FleetCA
from fleetguard.registry import service as registry
from fleetguard.store import Database
from fleetguard.telemetry import IngestService
from tests.telemetry.support import DEVICE_ADDRESS, add_device, device_client, enrolled_device


def _seen(db: Database, device_id: str) -> tuple[float | None, list[str]]:
    """Seconds since the registry last saw the device, and the addresses it holds."""
    with db.session() as session:
        device = registry.get_device(session, device_id)
    ago = (utcnow() - device.last_seen_at).total_seconds() if device.last_seen_at else None
    return ago, list(device.addresses)


def test_a_noted_device_is_seen_at_its_address_without_any_telemetry(
    db: Database, ingest: IngestService
) -> None:
    device = add_device(db)
    ingest.note_device_seen(device, "203.0.113.9")
    assert ingest.flush()
    ago, addresses = _seen(db, device)
    assert ago is not None and ago < 60
    assert addresses == ["203.0.113.9"]


def test_a_new_address_within_the_minute_is_recorded_too(
    db: Database, ingest: IngestService
) -> None:
    device = add_device(db)
    ingest.note_device_seen(device, "203.0.113.9")
    assert ingest.flush()
    ingest.note_device_seen(device, "2001:db8::1")
    assert ingest.flush()
    assert sorted(_seen(db, device)[1]) == ["2001:db8::1", "203.0.113.9"]


def test_a_note_without_an_ip_records_last_seen_only_and_an_unknown_device_harms_no_batch(
    db: Database, ingest: IngestService
) -> None:
    device = add_device(db)
    ingest.note_device_seen("00000000-0000-4000-8000-000000000000", "203.0.113.9")
    ingest.note_device_seen(device, "testclient")
    assert ingest.flush()
    ago, addresses = _seen(db, device)
    assert ago is not None and ago < 60
    assert addresses == []


def test_a_device_request_without_telemetry_updates_last_seen_and_address(
    device_app: FastAPI, db: Database, fleet_ca: FleetCA
) -> None:
    device, certificate = enrolled_device(db, fleet_ca)
    with device_client(device_app, certificate) as client:
        assert client.get("/v1/commands").json() == {"commands": []}
    assert device_app.state.device_ctx.ingest.flush()
    ago, addresses = _seen(db, device)
    assert ago is not None and ago < 60
    assert DEVICE_ADDRESS in addresses
