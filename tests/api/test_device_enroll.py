"""Token enrollment through the device endpoint's app, and where its blocking work runs."""

from __future__ import annotations

import asyncio
import threading

import httpx
import pytest
from fastapi import FastAPI

from fleetguard.identity import service as identity
from fleetguard.pki import FleetCA
from fleetguard.registry import DeviceState
from fleetguard.registry import service as registry
from fleetguard.store import Database
from tests.support import csr_pem


def _token(db: Database, ca: FleetCA) -> tuple[str, str]:
    with db.session() as session:
        device = registry.register_device(session, name="cam", actor="test")
        token, _ = identity.create_enrollment_token(session, ca, device_id=device.id,
                                                    actor="test", issuer=None)
    return device.id, token


def _enroll(app: FastAPI, *bodies: dict[str, str]) -> list[httpx.Response]:
    async def run() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="https://device") as client:
            return await asyncio.gather(*(client.post("/v1/enroll", json=b) for b in bodies))

    return asyncio.run(run())


def test_a_token_enrolls_once_and_activates_the_device(
    device_app: FastAPI, db: Database, fleet_ca: FleetCA
) -> None:
    device_id, token = _token(db, fleet_ca)
    first = _enroll(device_app, {"token": token, "csr": csr_pem()})
    again = _enroll(device_app, {"token": token, "csr": csr_pem()})
    assert first[0].status_code == 201
    assert first[0].json()["device_id"] == device_id
    assert again[0].status_code == 401
    assert again[0].json()["error"]["code"] == "enrollment_token_invalid"
    with db.read_session() as session:
        assert registry.get_device(session, device_id).state is DeviceState.ACTIVE


@pytest.mark.parametrize(("body", "status", "code"), [
    ({"token": "fge1.not-a-token", "csr": "x"}, 401, "enrollment_token_invalid"),
    ({"token": "t", "csr": "x", "device_id": "someone-else"}, 422, "validation_failed"),
    ({"token": "t", "csr": "x" * 16385}, 422, "validation_failed"),
    ({"token": "t" * 301, "csr": "x"}, 422, "validation_failed"),
    ({"csr": 7}, 422, "validation_failed"),
])
def test_a_hostile_enrollment_body_gets_a_clear_refusal(
    device_app: FastAPI, body: dict[str, object], status: int, code: str
) -> None:
    [response] = _enroll(device_app, body)  # type: ignore[arg-type]
    assert response.status_code == status
    assert response.json()["error"]["code"] == code


def test_concurrent_enrollments_each_get_their_own_answer(
    device_app: FastAPI, db: Database, fleet_ca: FleetCA
) -> None:
    tokens = [_token(db, fleet_ca) for _ in range(5)]
    bodies = [{"token": token, "csr": csr_pem()} for _, token in tokens]
    bodies[2]["csr"] = "not a CSR"
    responses = _enroll(device_app, *bodies)
    assert [r.status_code for r in responses] == [201, 201, 400, 201, 201]
    assert responses[2].json()["error"]["code"] == "csr_malformed"
    assert [r.json()["device_id"] for r in responses if r.status_code == 201] == [
        device_id for i, (device_id, _) in enumerate(tokens) if i != 2
    ]
    # The refused request consumed nothing: its token still enrolls.
    retry = _enroll(device_app, {"token": tokens[2][1], "csr": csr_pem()})
    assert retry[0].status_code == 201


def _enroll_while_another_thread_writes(
    app: FastAPI, db: Database, *bodies: dict[str, str]
) -> tuple[list[httpx.Response], dict[str, bool]]:
    """Post while a writer thread holds the SQLite writer lock; the loop lets it go once
    every request is under way. Says whether the loop released the writer (a loop blocked
    on the lock could not) and whether the requests were still pending then."""
    lock = db.write_lock
    assert lock is not None
    holding, release = threading.Event(), threading.Event()
    outcome: dict[str, bool] = {}

    def writer() -> None:
        with lock:
            holding.set()
            # The timeout only keeps a blocked loop from hanging the test.
            outcome["released_by_loop"] = release.wait(timeout=30)

    thread = threading.Thread(target=writer)
    thread.start()
    holding.wait()

    async def run() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="https://device") as client:
            pending = [asyncio.create_task(client.post("/v1/enroll", json=b)) for b in bodies]
            for _ in range(50):  # the loop keeps running other work meanwhile
                await asyncio.sleep(0)
            outcome["pending_while_held"] = not any(task.done() for task in pending)
            release.set()
            return list(await asyncio.gather(*pending))

    try:
        responses = asyncio.run(run())
    finally:
        release.set()
        thread.join()
    return responses, outcome


def test_an_enrollment_waits_off_the_event_loop_while_another_thread_writes(
    sqlite_device_app: FastAPI, sqlite_db: Database, fleet_ca: FleetCA
) -> None:
    device_id, token = _token(sqlite_db, fleet_ca)
    responses, outcome = _enroll_while_another_thread_writes(
        sqlite_device_app, sqlite_db, {"token": token, "csr": csr_pem()})
    assert outcome == {"released_by_loop": True, "pending_while_held": True}
    assert responses[0].status_code == 201
    assert responses[0].json()["device_id"] == device_id


def test_the_app_queues_enrollments_in_one_event_loop_after_another(
    sqlite_device_app: FastAPI, sqlite_db: Database, fleet_ca: FleetCA
) -> None:
    # Test clients and restarted servers bring a new loop to the same app.
    for _ in range(2):
        tokens = [_token(sqlite_db, fleet_ca)[1] for _ in range(3)]
        responses, _ = _enroll_while_another_thread_writes(
            sqlite_device_app, sqlite_db, *({"token": t, "csr": csr_pem()} for t in tokens))
        assert [r.status_code for r in responses] == [201, 201, 201]
