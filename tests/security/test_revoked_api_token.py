"""Attack: using a stolen API token after the owner has reacted.

A CI job's token leaks (a log, a fork's secrets). The operator revokes it, or an admin
disables the operator's account; from the next request on, the token gets 401
``invalid_credentials`` for reads and writes alike, and nothing it sends changes anything.
A disabled operator's browser sessions end the same way.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from fleetguard.operators import Role
from tests.api.conftest import new_client
from tests.support import LoggedIn


@pytest.fixture
def attacker(app: FastAPI) -> Iterator[TestClient]:
    """Somewhere else entirely: no cookies, only what was stolen."""
    with new_client(app) as c:
        yield c


def _token(user: LoggedIn) -> tuple[str, dict[str, str]]:
    r = user.client.post("/api/v1/tokens", json={"name": "ci"}, headers=user.headers())
    assert r.status_code == 201, r.text
    return r.json()["info"]["token_id"], {"Authorization": f"Bearer {r.json()['token']}"}


def _device_names(user: LoggedIn) -> list[str]:
    r = user.client.get("/api/v1/devices")
    assert r.status_code == 200, r.text
    return sorted(d["name"] for d in r.json()["devices"])


def _refused_everything(attacker: TestClient, stolen: dict[str, str]) -> None:
    for r in (attacker.get("/api/v1/me", headers=stolen),
              attacker.post("/api/v1/devices", json={"name": "planted"}, headers=stolen)):
        assert r.status_code == 401, r.text
        assert r.json()["error"]["code"] == "invalid_credentials"


def test_revoked_api_token_is_refused(
    attacker: TestClient, login_as: Callable[[Role], LoggedIn]
) -> None:
    owner = login_as(Role.OPERATOR)
    token_id, stolen = _token(owner)
    assert attacker.get("/api/v1/me", headers=stolen).status_code == 200
    r = owner.client.delete(f"/api/v1/tokens/{token_id}", headers=owner.headers())
    assert r.status_code == 200, r.text
    _refused_everything(attacker, stolen)
    assert _device_names(owner) == []


def test_api_token_of_a_disabled_operator_is_refused(
    attacker: TestClient, login_as: Callable[[Role], LoggedIn]
) -> None:
    owner = login_as(Role.OPERATOR)
    admin = login_as(Role.ADMIN)
    _, stolen = _token(owner)
    assert attacker.get("/api/v1/me", headers=stolen).status_code == 200
    r = admin.client.post(f"/api/v1/operators/{owner.username}/disable", headers=admin.headers())
    assert r.status_code == 200, r.text
    _refused_everything(attacker, stolen)
    assert _device_names(admin) == []


def test_session_of_a_disabled_operator_is_refused(
    login_as: Callable[[Role], LoggedIn]
) -> None:
    owner = login_as(Role.OPERATOR)
    admin = login_as(Role.ADMIN)
    assert owner.client.get("/api/v1/me").status_code == 200
    r = admin.client.post(f"/api/v1/operators/{owner.username}/disable", headers=admin.headers())
    assert r.status_code == 200, r.text
    assert owner.client.get("/api/v1/me").status_code == 401
    r = owner.client.post("/api/v1/devices", json={"name": "planted"}, headers=owner.headers())
    assert r.status_code == 401
    assert _device_names(admin) == []


def test_api_token_stays_refused_after_its_operator_is_enabled_again(
    attacker: TestClient, login_as: Callable[[Role], LoggedIn]
) -> None:
    """Disabling revokes the tokens: enabling the account again hands back its password
    login, not a token that may have leaked while it was suspected."""
    owner = login_as(Role.OPERATOR)
    admin = login_as(Role.ADMIN)
    token_id, stolen = _token(owner)
    for action in ("disable", "enable"):
        r = admin.client.post(f"/api/v1/operators/{owner.username}/{action}",
                              headers=admin.headers())
        assert r.status_code == 200, r.text
    _refused_everything(attacker, stolen)
    tokens = {t["token_id"]: t for t in admin.client.get("/api/v1/tokens").json()}
    assert tokens[token_id]["revoked_at"] is not None
