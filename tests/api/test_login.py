"""Logins: passwords, the second factor, lockout, sessions and CSRF."""

from __future__ import annotations

from collections.abc import Callable

from fastapi import FastAPI
from fastapi.testclient import TestClient

from fleetguard.operators import Role
from tests.api.conftest import new_client
from tests.support import LoggedIn, code_for, login_admin_enrolling_mfa, secret_from_uri


def test_admin_password_alone_gives_no_session(
    client: TestClient, add_operator: Callable[[str, Role], str]
) -> None:
    password = add_operator("root", Role.ADMIN)
    r = client.post("/api/v1/auth/login", json={"username": "root", "password": password})
    assert r.status_code == 200
    assert r.json()["step"] == "mfa_enrollment_required"
    assert "set-cookie" not in r.headers
    assert client.get("/api/v1/me").status_code == 401


def test_admin_with_mfa_must_give_a_code(
    app: FastAPI, add_operator: Callable[[str, Role], str]
) -> None:
    password = add_operator("root", Role.ADMIN)
    login_admin_enrolling_mfa(new_client(app), "root", password)
    client = new_client(app)
    r = client.post("/api/v1/auth/login", json={"username": "root", "password": password})
    assert r.json()["step"] == "mfa_required"
    assert client.get("/api/v1/me").status_code == 401


def test_totp_code_cannot_be_replayed(
    app: FastAPI, add_operator: Callable[[str, Role], str]
) -> None:
    password = add_operator("root", Role.ADMIN)
    enrolled = login_admin_enrolling_mfa(new_client(app), "root", password)
    assert enrolled.totp_secret
    code = code_for(enrolled.totp_secret, 1)

    first = new_client(app)
    challenge = first.post(
        "/api/v1/auth/login", json={"username": "root", "password": password}
    ).json()["challenge"]
    assert first.post("/api/v1/auth/mfa", json={"challenge": challenge, "code": code}).status_code == 200
    assert first.get("/api/v1/me").json()["username"] == "root"

    second = new_client(app)
    challenge = second.post(
        "/api/v1/auth/login", json={"username": "root", "password": password}
    ).json()["challenge"]
    r = second.post("/api/v1/auth/mfa", json={"challenge": challenge, "code": code})
    assert r.status_code == 401
    assert r.json()["error"]["code"] == "mfa_failed"
    assert second.get("/api/v1/me").status_code == 401


def test_recovery_code_works_once(app: FastAPI, add_operator: Callable[[str, Role], str]) -> None:
    password = add_operator("root", Role.ADMIN)
    enrolled = login_admin_enrolling_mfa(new_client(app), "root", password)
    assert enrolled.recovery_codes and len(enrolled.recovery_codes) == 10
    code = enrolled.recovery_codes[0]
    for expected in (200, 401):
        c = new_client(app)
        challenge = c.post(
            "/api/v1/auth/login", json={"username": "root", "password": password}
        ).json()["challenge"]
        assert c.post("/api/v1/auth/mfa", json={"challenge": challenge, "code": code}).status_code == expected


def test_enrollment_rejects_a_wrong_code(
    client: TestClient, add_operator: Callable[[str, Role], str]
) -> None:
    password = add_operator("root", Role.ADMIN)
    challenge = client.post(
        "/api/v1/auth/login", json={"username": "root", "password": password}
    ).json()["challenge"]
    uri = client.post("/api/v1/auth/mfa/enroll", json={"challenge": challenge}).json()["otpauth_uri"]
    good = code_for(secret_from_uri(uri))
    wrong = f"{(int(good) + 1) % 1_000_000:06d}"
    r = client.post("/api/v1/auth/mfa/enroll/confirm", json={"challenge": challenge, "code": wrong})
    assert r.status_code == 401
    assert client.get("/api/v1/me").status_code == 401


def test_enrollment_gives_a_qr_code_and_otpauth_uri(
    client: TestClient, add_operator: Callable[[str, Role], str]
) -> None:
    password = add_operator("root", Role.ADMIN)
    challenge = client.post(
        "/api/v1/auth/login", json={"username": "root", "password": password}
    ).json()["challenge"]
    body = client.post("/api/v1/auth/mfa/enroll", json={"challenge": challenge}).json()
    assert body["otpauth_uri"].startswith("otpauth://totp/fleetguard:root?")
    assert "<svg" in body["qr_svg"]


def test_unknown_user_and_wrong_password_get_the_same_answer(
    client: TestClient, add_operator: Callable[[str, Role], str]
) -> None:
    add_operator("alice", Role.OPERATOR)
    wrong = client.post("/api/v1/auth/login", json={"username": "alice", "password": "nope-nope-nope"})
    unknown = client.post("/api/v1/auth/login", json={"username": "mallory", "password": "nope-nope-nope"})
    assert wrong.status_code == unknown.status_code == 401
    assert wrong.json() == unknown.json()


def test_repeated_failures_lock_the_account_with_growing_delay(
    client: TestClient, add_operator: Callable[[str, Role], str]
) -> None:
    password = add_operator("alice", Role.OPERATOR)
    bad = {"username": "alice", "password": "wrong-password-123"}
    for _ in range(5):
        assert client.post("/api/v1/auth/login", json=bad).status_code == 401
    locked = client.post("/api/v1/auth/login", json={"username": "alice", "password": password})
    assert locked.status_code == 429
    assert locked.json()["error"]["code"] == "locked_out"
    first_wait = int(locked.headers["retry-after"])
    assert first_wait >= 1


def test_lockout_delay_grows_with_each_failure(sqlite_db, add_operator) -> None:  # type: ignore[no-untyped-def]
    from datetime import timedelta

    from fleetguard.core.clock import utcnow
    from fleetguard.operators import throttle
    from fleetguard.store.tables import LoginThrottleRow

    key = throttle.account_key("alice")
    now = utcnow()
    waits = []
    with sqlite_db.session() as session:
        for i in range(8):
            throttle.record_failure(session, [key], now + timedelta(hours=0, seconds=i))
            row = session.get(LoginThrottleRow, key)
            waits.append(
                (row.locked_until - (now + timedelta(seconds=i))).total_seconds()
                if row.locked_until else 0
            )
    assert waits[:4] == [0, 0, 0, 0]
    assert waits[4] < waits[5] < waits[6] < waits[7]


def test_many_failures_from_one_address_lock_that_address(
    client: TestClient, add_operator: Callable[[str, Role], str]
) -> None:
    password = add_operator("victim", Role.OPERATOR)
    for i in range(20):
        client.post("/api/v1/auth/login", json={"username": f"user{i}", "password": "wrong-password-123"})
    r = client.post("/api/v1/auth/login", json={"username": "victim", "password": password})
    assert r.status_code == 429


def test_disabled_operator_cannot_log_in(
    client: TestClient, login_as: Callable[[Role], LoggedIn], add_operator: Callable[[str, Role], str]
) -> None:
    admin = login_as(Role.ADMIN)
    password = add_operator("bob", Role.OPERATOR)
    assert admin.client.post("/api/v1/operators/bob/disable", headers=admin.headers()).status_code == 200
    r = client.post("/api/v1/auth/login", json={"username": "bob", "password": password})
    assert r.status_code == 401


def test_session_cookie_is_httponly_secure_samesite(
    client: TestClient, add_operator: Callable[[str, Role], str]
) -> None:
    password = add_operator("alice", Role.OPERATOR)
    r = client.post("/api/v1/auth/login", json={"username": "alice", "password": password})
    cookies = [v for k, v in r.headers.multi_items() if k == "set-cookie"]
    session = next(c for c in cookies if c.startswith("__Host-fg_session="))
    lowered = session.lower()
    assert "httponly" in lowered and "secure" in lowered and "samesite=strict" in lowered


def test_unsafe_request_with_session_needs_csrf_token(login_as: Callable[[Role], LoggedIn]) -> None:
    user = login_as(Role.OPERATOR)
    body = {"name": "ci"}
    missing = user.client.post("/api/v1/tokens", json=body)
    assert missing.status_code == 403
    assert missing.json()["error"]["code"] == "csrf_failed"
    wrong = user.client.post("/api/v1/tokens", json=body, headers={"X-CSRF-Token": "x" * 43})
    assert wrong.status_code == 403
    assert user.client.post("/api/v1/tokens", json=body, headers=user.headers()).status_code == 201


def test_logout_ends_the_session(login_as: Callable[[Role], LoggedIn]) -> None:
    user = login_as(Role.AUDITOR)
    assert user.client.post("/api/v1/auth/logout", headers=user.headers()).status_code == 204
    assert user.client.get("/api/v1/me").status_code == 401


def test_login_is_recorded_in_the_audit_log(login_as: Callable[[Role], LoggedIn]) -> None:
    admin = login_as(Role.ADMIN)
    actions = [e["action"] for e in admin.client.get("/api/v1/audit-log").json()["entries"]]
    assert "operator.login" in actions and "operator.mfa_enroll" in actions
