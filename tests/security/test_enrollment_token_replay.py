"""Attack: replaying a device's one-time enrollment token.

The token travels to the device by hand (a provisioning script, a label, an e-mail); an
attacker who copies it tries to enroll a key of their own and so get a certificate that
names the device. A token enrolls once: any later use, with a new CSR or the same one,
and any number of uses sent at the same moment as the real one, get 401
``enrollment_token_invalid``, and the device ends up with exactly one certificate, the
winner's. On SQLite and on PostgreSQL.
"""

from __future__ import annotations

import asyncio

import httpx
import pytest
from cryptography import x509
from fastapi import FastAPI

from fleetguard.identity import service as identity
from fleetguard.pki import FleetCA
from fleetguard.registry import DeviceState
from fleetguard.registry import service as registry
from fleetguard.store import Database
from tests.support import csr_pem


@pytest.fixture
def token(db: Database, fleet_ca: FleetCA) -> tuple[str, str]:
    """(device id, its one-time enrollment token)"""
    with db.session() as session:
        device = registry.register_device(session, name="cam", actor="test")
        secret, _ = identity.create_enrollment_token(session, fleet_ca, device_id=device.id,
                                                     actor="test", issuer=None)
    return device.id, secret


def _enroll(app: FastAPI, *bodies: dict[str, str]) -> list[httpx.Response]:
    """All the requests at once, through the app's own event loop handling."""
    async def run() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="https://device") as client:
            return await asyncio.gather(*(client.post("/v1/enroll", json=b) for b in bodies))

    return asyncio.run(run())


def _certificates(db: Database) -> list[tuple[str, str]]:
    """Every certificate in the fleet: (device id, serial)."""
    with db.read_session() as session:
        return [(c.device_id, c.serial_hex) for c in identity.list_certificates(session)]


def _refused(r: httpx.Response) -> None:
    assert r.status_code == 401, r.text
    assert r.json()["error"]["code"] == "enrollment_token_invalid"
    assert "certificate_pem" not in r.text


def _serial(r: httpx.Response) -> str:
    cert = x509.load_pem_x509_certificate(r.json()["certificate_pem"].encode())
    return f"{cert.serial_number:x}"


@pytest.mark.parametrize("csr", ["a new CSR", "the same CSR"])
def test_enrollment_token_replay_after_use_is_refused(
    device_app: FastAPI, db: Database, token: tuple[str, str], csr: str
) -> None:
    device_id, secret = token
    first_csr = csr_pem()
    [first] = _enroll(device_app, {"token": secret, "csr": first_csr})
    assert first.status_code == 201, first.text
    replay_csr = csr_pem() if csr == "a new CSR" else first_csr
    [again] = _enroll(device_app, {"token": secret, "csr": replay_csr})
    _refused(again)
    assert _certificates(db) == [(device_id, first.json()["serial"])]
    assert first.json()["serial"] == _serial(first)
    with db.read_session() as session:
        assert registry.get_device(session, device_id).state is DeviceState.ACTIVE


def test_enrollment_token_replay_sent_concurrently_enrolls_exactly_once(
    device_app: FastAPI, db: Database, token: tuple[str, str]
) -> None:
    device_id, secret = token
    responses = _enroll(device_app, *({"token": secret, "csr": csr_pem()} for _ in range(8)))
    winners = [r for r in responses if r.status_code == 201]
    assert len(winners) == 1, [(r.status_code, r.text[:200]) for r in responses]
    for r in responses:
        if r is not winners[0]:
            _refused(r)
    assert _certificates(db) == [(device_id, winners[0].json()["serial"])]

