"""A device that authenticates to the device endpoint is seen: its last-seen and address
move through the one writer (the ingest service), whichever route it called."""

from __future__ import annotations

from fastapi import FastAPI

from fleetguard.core.clock import utcnow
from fleetguard.identity import admission
from fleetguard.pki import FleetCA
from fleetguard.registry import service as registry
from fleetguard.store import Database
from tests.telemetry.support import DEVICE_ADDRESS, device_client, enrolled_device


def test_an_authenticated_device_request_moves_last_seen_and_address(
    device_app: FastAPI, db: Database, fleet_ca: FleetCA
) -> None:
    device_id, certificate = enrolled_device(db, fleet_ca)
    with device_client(device_app, certificate) as client:
        assert client.get("/v1/whoami").json()["id"] == device_id
    assert device_app.state.device_ctx.ingest.flush()
    with db.session() as session:
        device = registry.get_device(session, device_id)
    assert device.last_seen_at is not None
    assert (utcnow() - device.last_seen_at).total_seconds() < 60
    assert DEVICE_ADDRESS in device.addresses


def test_identity_authenticating_a_device_leaves_last_seen_to_the_ingest_writer(
    db: Database, fleet_ca: FleetCA
) -> None:
    device_id, certificate = enrolled_device(db, fleet_ca)
    with db.session() as session:
        admission.authenticate_peer_certificate(session, certificate, source=DEVICE_ADDRESS)
    with db.session() as session:
        device = registry.get_device(session, device_id)
    assert device.last_seen_at is None and device.addresses == []
