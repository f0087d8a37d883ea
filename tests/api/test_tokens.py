"""API tokens: strong, hashed at rest, scoped, expiring, revocable, last use recorded."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

from fastapi import FastAPI
from sqlalchemy import select

from fleetguard.operators import Role, tokens
from fleetguard.operators import service as operators
from fleetguard.store import Database
from fleetguard.store.tables import ApiTokenRow
from tests.api.conftest import new_client
from tests.support import LoggedIn


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_token_authenticates_and_records_last_use(
    app: FastAPI, login_as: Callable[[Role], LoggedIn]
) -> None:
    user = login_as(Role.OPERATOR)
    issued = user.client.post("/api/v1/tokens", json={"name": "ci"}, headers=user.headers()).json()
    anon = new_client(app)
    assert anon.get("/api/v1/me", headers=_bearer(issued["token"])).json()["username"] == user.username
    listed = user.client.get("/api/v1/tokens").json()
    assert listed[0]["last_used_at"] is not None
    assert listed[0]["last_used_from"] == "testclient"


def test_token_secret_has_at_least_128_bits_and_is_stored_hashed(
    login_as: Callable[[Role], LoggedIn], sqlite_db: Database
) -> None:
    user = login_as(Role.OPERATOR)
    token = user.client.post("/api/v1/tokens", json={"name": "ci"}, headers=user.headers()).json()["token"]
    secret = token.split("_", 2)[2]
    assert len(secret) * 6 >= 128 + 42  # 32 random bytes in URL-safe base64
    with sqlite_db.session() as session:
        stored = session.execute(select(ApiTokenRow)).scalar_one()
    assert secret not in stored.secret_hash and token not in stored.secret_hash


def test_revoked_token_is_refused(app: FastAPI, login_as: Callable[[Role], LoggedIn]) -> None:
    user = login_as(Role.OPERATOR)
    issued = user.client.post("/api/v1/tokens", json={"name": "ci"}, headers=user.headers()).json()
    r = user.client.delete(f"/api/v1/tokens/{issued['info']['token_id']}", headers=user.headers())
    assert r.status_code == 200
    assert new_client(app).get("/api/v1/me", headers=_bearer(issued["token"])).status_code == 401


def test_expired_token_is_refused(app: FastAPI, sqlite_db: Database, add_operator) -> None:  # type: ignore[no-untyped-def]
    add_operator("bot", Role.OPERATOR)
    with sqlite_db.session() as session:
        issued = tokens.create_api_token(
            session, username="bot", name="short", role=None, ttl=timedelta(seconds=1), actor="t", issuer=None
        )
        row = session.execute(select(ApiTokenRow)).scalar_one()
        row.expires_at = row.created_at - timedelta(seconds=1)
    assert new_client(app).get("/api/v1/me", headers=_bearer(issued.token)).status_code == 401


def test_token_acts_with_its_scoped_role(app: FastAPI, login_as: Callable[[Role], LoggedIn]) -> None:
    admin = login_as(Role.ADMIN)
    issued = admin.client.post(
        "/api/v1/tokens", json={"name": "read-only", "role": "auditor"}, headers=admin.headers()
    ).json()
    anon = new_client(app)
    assert anon.get("/api/v1/audit-log", headers=_bearer(issued["token"])).status_code == 200
    assert anon.get("/api/v1/operators", headers=_bearer(issued["token"])).status_code == 403


def test_token_cannot_outrank_its_operator(login_as: Callable[[Role], LoggedIn]) -> None:
    auditor = login_as(Role.AUDITOR)
    r = auditor.client.post(
        "/api/v1/tokens", json={"name": "x", "role": "admin"}, headers=auditor.headers()
    )
    assert r.status_code == 403
    assert r.json()["error"]["code"] == "token_role_too_high"


def test_tokens_of_a_disabled_operator_stop_working(
    app: FastAPI, login_as: Callable[[Role], LoggedIn], sqlite_db: Database
) -> None:
    user = login_as(Role.OPERATOR)
    token = user.client.post("/api/v1/tokens", json={"name": "ci"}, headers=user.headers()).json()["token"]
    with sqlite_db.session() as session:
        operators.set_operator_disabled(session, username=user.username, disabled=True, actor="t", issuer=None)
    assert new_client(app).get("/api/v1/me", headers=_bearer(token)).status_code == 401


def test_operator_cannot_revoke_someone_elses_token(
    login_as: Callable[[Role], LoggedIn], app: FastAPI, add_operator, sqlite_db: Database  # type: ignore[no-untyped-def]
) -> None:
    add_operator("other", Role.OPERATOR)
    with sqlite_db.session() as session:
        theirs = tokens.create_api_token(
            session, username="other", name="theirs", role=None, ttl=None, actor="t", issuer=None
        )
    user = login_as(Role.OPERATOR)
    r = user.client.delete(f"/api/v1/tokens/{theirs.info.token_id}", headers=user.headers())
    assert r.status_code == 404
    assert new_client(app).get("/api/v1/me", headers=_bearer(theirs.token)).status_code == 200
