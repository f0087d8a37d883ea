"""Attack: a narrow credential mints a wider one.

The probe's auditor-scoped token of an admin created an admin token through
``POST /api/v1/tokens`` and with it an admin operator; an operator's auditor-scoped token
minted an operator token. A request acts with the lesser of its operator's role and its
token's scope, and whatever it mints (tokens, operators, re-enabled accounts, second-factor
resets, enrollment tokens, claim certificates) has at most that scope and, when the caller
is a token, ends no later than that token.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from datetime import timedelta

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from fleetguard.operators import Role, tokens
from fleetguard.operators import service as operators
from fleetguard.operators.models import ROLE_RANK
from fleetguard.registry import service as registry
from fleetguard.store import Database
from tests.api.conftest import new_client
from tests.support import LoggedIn, strong_password

ISSUING_TOKEN_TTL = timedelta(days=30)
# Every (operator role, token scope) a token can have: the scope is at most the role.
ROLE_SCOPES = [(o, s) for o, s in itertools.product(Role, Role) if ROLE_RANK[s] <= ROLE_RANK[o]]


def _id(pair: tuple[Role, Role]) -> str:
    return f"{pair[0].value}-with-{pair[1].value}-token"


@pytest.fixture
def api(app: FastAPI) -> Iterator[TestClient]:
    with new_client(app) as c:
        yield c


def _token_for(db: Database, role: Role, scope: Role) -> dict[str, str]:
    username = f"{role.value}-as-{scope.value}"
    with db.session() as session:
        operators.create_operator(session, username=username, password=strong_password(),
                                  role=role, actor="test", issuer=None)
        token = tokens.create_api_token(session, username=username, name="issuer", role=scope,
                                           ttl=ISSUING_TOKEN_TTL, actor="test", issuer=None).token
    return {"Authorization": f"Bearer {token}"}


def _expected(allowed: bool, status: int) -> int:
    return status if allowed else 403


@pytest.mark.parametrize("pair", ROLE_SCOPES, ids=_id)
@pytest.mark.parametrize("requested", list(Role), ids=lambda r: f"asks-{r.value}")
def test_token_mints_tokens_of_at_most_its_own_scope(
    api: TestClient, sqlite_db: Database, pair: tuple[Role, Role], requested: Role
) -> None:
    role, scope = pair
    auth = _token_for(sqlite_db, role, scope)
    r = api.post("/api/v1/tokens", json={"name": "minted", "role": requested.value,
                                         "ttl_days": 1}, headers=auth)
    allowed = ROLE_RANK[requested] <= ROLE_RANK[scope]
    assert r.status_code == _expected(allowed, 201), r.text
    if allowed:
        minted = {"Authorization": f"Bearer {r.json()['token']}"}
        me = api.get("/api/v1/tokens", headers=minted)
        assert me.status_code == 200
        assert {t["role"] for t in me.json() if t["name"] == "minted"} == {requested.value}


@pytest.mark.parametrize("pair", ROLE_SCOPES, ids=_id)
def test_token_minted_without_a_role_takes_the_callers_scope_not_the_operators(
    api: TestClient, sqlite_db: Database, pair: tuple[Role, Role]
) -> None:
    role, scope = pair
    r = api.post("/api/v1/tokens", json={"name": "minted", "ttl_days": 1},
                 headers=_token_for(sqlite_db, role, scope))
    assert r.status_code == 201, r.text
    assert r.json()["info"]["role"] == scope.value


@pytest.mark.parametrize("pair", ROLE_SCOPES, ids=_id)
def test_token_cannot_mint_a_token_that_outlives_it(
    api: TestClient, sqlite_db: Database, pair: tuple[Role, Role]
) -> None:
    role, scope = pair
    r = api.post("/api/v1/tokens", json={"name": "forever", "role": scope.value,
                                         "ttl_days": 365},
                 headers=_token_for(sqlite_db, role, scope))
    assert r.status_code == 403, r.text
    assert r.json()["error"]["code"] == "credential_too_wide"


def test_auditor_scoped_admin_token_cannot_reach_admin(
    api: TestClient, sqlite_db: Database
) -> None:
    """The probe's exact path: auditor-scoped token -> admin token -> admin operator."""
    auth = _token_for(sqlite_db, Role.ADMIN, Role.AUDITOR)
    r = api.post("/api/v1/tokens", json={"name": "up", "role": "admin", "ttl_days": 1},
                 headers=auth)
    assert r.status_code == 403
    r = api.post("/api/v1/operators", json={"username": "backdoor", "role": "admin",
                                            "password": strong_password()}, headers=auth)
    assert r.status_code == 403
    with sqlite_db.session() as session:
        assert "backdoor" not in {o.username for o in operators.list_operators(session)}


@pytest.mark.parametrize("pair", ROLE_SCOPES, ids=_id)
@pytest.mark.parametrize("requested", list(Role), ids=lambda r: f"asks-{r.value}")
def test_no_token_creates_an_operator(
    api: TestClient, sqlite_db: Database, pair: tuple[Role, Role], requested: Role
) -> None:
    """An operator account never expires, so no token (which does) may create one."""
    r = api.post("/api/v1/operators", json={"username": "minted", "role": requested.value,
                                            "password": strong_password()},
                 headers=_token_for(sqlite_db, *pair))
    assert r.status_code == 403, r.text


@pytest.mark.parametrize("pair", ROLE_SCOPES, ids=_id)
@pytest.mark.parametrize("action", ["enable", "reset-mfa"])
def test_no_token_re_enables_an_operator_or_resets_a_second_factor(
    api: TestClient, sqlite_db: Database, add_operator: Callable[[str, Role], str],
    pair: tuple[Role, Role], action: str,
) -> None:
    add_operator("target", Role.AUDITOR)
    with sqlite_db.session() as session:
        operators.set_operator_disabled(session, username="target", disabled=True,
                                        actor="test", issuer=None)
    r = api.post(f"/api/v1/operators/target/{action}", headers=_token_for(sqlite_db, *pair))
    assert r.status_code == 403, r.text
    with sqlite_db.session() as session:
        assert operators.get_operator(session, "target").disabled


@pytest.mark.parametrize("action", ["enable", "reset-mfa"])
def test_admin_session_re_enables_and_resets(
    login_as: Callable[[Role], LoggedIn], add_operator: Callable[[str, Role], str],
    sqlite_db: Database, action: str,
) -> None:
    admin = login_as(Role.ADMIN)
    add_operator("target", Role.ADMIN)
    with sqlite_db.session() as session:
        operators.set_operator_disabled(session, username="target", disabled=True,
                                        actor="test", issuer=None)
    r = admin.client.post(f"/api/v1/operators/target/{action}", headers=admin.headers())
    assert r.status_code == 200, r.text


def test_admin_session_creates_an_admin(login_as: Callable[[Role], LoggedIn]) -> None:
    admin = login_as(Role.ADMIN)
    r = admin.client.post("/api/v1/operators", json={
        "username": "second-admin", "role": "admin", "password": strong_password()},
        headers=admin.headers())
    assert r.status_code == 201, r.text


@pytest.mark.parametrize("pair", ROLE_SCOPES, ids=_id)
@pytest.mark.parametrize("hours", [24, 24 * 60])
def test_enrollment_token_lives_no_longer_than_the_token_that_asks(
    api: TestClient, sqlite_db: Database, pair: tuple[Role, Role], hours: int
) -> None:
    with sqlite_db.session() as session:
        device = registry.register_device(session, name="cam", actor="test")
    r = api.post(f"/api/v1/devices/{device.id}/enrollment-token", json={"ttl_hours": hours},
                 headers=_token_for(sqlite_db, *pair))
    may_write = pair[1] is not Role.AUDITOR
    fits = timedelta(hours=hours) <= ISSUING_TOKEN_TTL
    assert r.status_code == (201 if may_write and fits else 403), r.text


@pytest.mark.parametrize("pair", ROLE_SCOPES, ids=_id)
@pytest.mark.parametrize("days", [10, 365])
def test_claim_certificate_lives_no_longer_than_the_token_that_asks(
    api: TestClient, sqlite_db: Database, pair: tuple[Role, Role], days: int
) -> None:
    r = api.post("/api/v1/claim-batches", json={
        "name": "batch", "serials": ["SN-1"], "validity_days": days},
        headers=_token_for(sqlite_db, *pair))
    is_admin = pair[1] is Role.ADMIN
    fits = timedelta(days=days) <= ISSUING_TOKEN_TTL
    assert r.status_code == (201 if is_admin and fits else 403), r.text
