"""Fixtures for the dashboard: the app, operators of each role, forms-based login, a device."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from fleetguard.identity import service as identity
from fleetguard.operators import Role
from fleetguard.operators import service as operators
from fleetguard.pki import FleetCA
from fleetguard.registry import service as registry
from fleetguard.store import Database
from tests.api.conftest import app, fleet_ca, new_client, scan_jobs
from tests.support import code_for, csr_pem, strong_password

# The operator app as the API's tests build it (through server.operator_app).
__all__ = ["app", "fleet_ca", "new_client", "scan_jobs"]

HIDDEN = r'name="{}" value="([^"]*)"'


def hidden(html: str, name: str) -> str:
    match = re.search(HIDDEN.format(name), html)
    assert match, f"no hidden field {name} in:\n{html[:2000]}"
    return match.group(1)


@dataclass
class Browser:
    client: TestClient
    username: str
    role: Role
    totp_secret: str | None = None

    @property
    def csrf(self) -> str:
        return self.client.cookies.get("__Host-fg_csrf") or ""


def form_login(client: TestClient, username: str, password: str,
               totp_secret: str | None = None) -> str | None:
    """Log in through the HTML forms, enrolling a TOTP authenticator when asked.
    Returns the TOTP secret in use (new one when enrolled)."""
    r = client.get("/login")
    assert r.status_code == 200
    token = hidden(r.text, "login_token")
    r = client.post("/login", data={"username": username, "password": password,
                                    "login_token": token, "next": "/"},
                    follow_redirects=False)
    if r.status_code == 303:
        return totp_secret
    assert r.status_code == 200, r.text
    challenge = hidden(r.text, "challenge")
    if 'action="/login/enroll"' in r.text:
        secret = re.search(r'id="totp-secret">([A-Z2-7]+)<', r.text)
        assert secret and 'src="data:image/svg+xml;base64,' in r.text
        totp_secret = secret.group(1)
        r = client.post("/login/enroll", data={"challenge": challenge, "login_token": token,
                                               "code": code_for(totp_secret), "next": "/"})
        assert r.status_code == 200, r.text
        assert "recovery codes" in r.text
        return totp_secret
    assert 'action="/login/mfa"' in r.text and totp_secret
    r = client.post("/login/mfa", data={"challenge": challenge, "login_token": token,
                                        "code": code_for(totp_secret), "next": "/"},
                    follow_redirects=False)
    assert r.status_code == 303, r.text
    return totp_secret


@pytest.fixture
def anonymous(app: FastAPI) -> Iterator[TestClient]:
    with new_client(app) as c:
        yield c


@pytest.fixture
def browser_as(app: FastAPI, sqlite_db: Database) -> Iterator[Callable[[Role], Browser]]:
    clients: list[TestClient] = []

    def make(role: Role) -> Browser:
        username = f"{role.value}-web"
        password = strong_password()
        with sqlite_db.session() as s:
            operators.create_operator(s, username=username, password=password, role=role,
                                      actor="test", issuer=None)
        client = new_client(app)
        clients.append(client)
        secret = form_login(client, username, password)
        return Browser(client, username, role, secret)

    yield make
    for c in clients:
        c.close()


@dataclass
class EnrolledDevice:
    id: str
    serial_hex: str


@pytest.fixture
def enrolled_device(sqlite_db: Database, fleet_ca: FleetCA) -> EnrolledDevice:
    with sqlite_db.session() as s:
        device = registry.register_device(s, name="cam-17", serial="SN17",
                                          labels={"site": "berlin"}, actor="test")
        token, _ = identity.create_enrollment_token(s, fleet_ca, device_id=device.id,
                                                    actor="test", issuer=None)
    with sqlite_db.session() as s:
        result = identity.enroll_with_token(s, fleet_ca, token=token, csr=csr_pem(),
                                            source="127.0.0.1")
    return EnrolledDevice(device.id, result.serial_hex)
