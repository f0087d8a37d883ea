from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from fleetguard.api.device_app import create_device_app
from fleetguard.core.config import Settings
from fleetguard.identity.ca import init_installation_ca
from fleetguard.keys import MasterKey
from fleetguard.operators import Role
from fleetguard.operators import service as operators
from fleetguard.pki import FleetCA
from fleetguard.server.operator_app import create_operator_app
from fleetguard.server.scan_jobs import ScanJobs
from fleetguard.store import Database
from fleetguard.telemetry import IngestService
from tests.support import (
    LoggedIn,
    login_admin_enrolling_mfa,
    login_password_only,
    strong_password,
)


@pytest.fixture
def fleet_ca(settings: Settings, master_key: MasterKey) -> Iterator[FleetCA]:
    with init_installation_ca(settings, master_key) as ca:
        yield ca


@pytest.fixture
def scan_jobs(sqlite_db: Database) -> Iterator[ScanJobs]:
    """The app's scan jobs (what `fleetguard serve` makes once); none outlives its test."""
    jobs = ScanJobs(sqlite_db)
    yield jobs
    assert jobs.wait_for_scans(60)


@pytest.fixture
def app(
    settings: Settings, sqlite_db: Database, master_key: MasterKey, fleet_ca: FleetCA,
    scan_jobs: ScanJobs,
) -> FastAPI:
    return create_operator_app(settings, db=sqlite_db, master_key=master_key, ca=fleet_ca,
                               scan_jobs=scan_jobs)


def new_client(app: FastAPI) -> TestClient:
    # https so that Secure cookies are sent back, as a browser would.
    return TestClient(app, base_url="https://testserver", raise_server_exceptions=False)


@pytest.fixture
def client(app: FastAPI) -> Iterator[TestClient]:
    with new_client(app) as c:
        yield c


@pytest.fixture
def add_operator(sqlite_db: Database) -> Callable[[str, Role], str]:
    def add(username: str, role: Role) -> str:
        password = strong_password()
        with sqlite_db.session() as session:
            operators.create_operator(
                session, username=username, password=password, role=role, actor="test", issuer=None
            )
        return password

    return add


@pytest.fixture
def login_as(
    app: FastAPI, add_operator: Callable[[str, Role], str]
) -> Callable[[Role], LoggedIn]:
    """A fresh client logged in with a session for a new operator of the given role."""

    def login(role: Role) -> LoggedIn:
        username = f"{role.value}-user"
        password = add_operator(username, role)
        client = new_client(app)
        if role is Role.ADMIN:
            return login_admin_enrolling_mfa(client, username, password)
        return login_password_only(client, username, password)

    return login


def _device_app(db: Database, ca: FleetCA) -> Iterator[FastAPI]:
    ingest = IngestService(db)
    app = create_device_app(db, ca, ingest=ingest)
    yield app
    app.state.device_ctx.short_writes.close()
    ingest.stop()


@pytest.fixture
def device_app(db: Database, fleet_ca: FleetCA) -> Iterator[FastAPI]:
    """On SQLite and on PostgreSQL."""
    yield from _device_app(db, fleet_ca)


@pytest.fixture
def sqlite_device_app(sqlite_db: Database, fleet_ca: FleetCA) -> Iterator[FastAPI]:
    yield from _device_app(sqlite_db, fleet_ca)
