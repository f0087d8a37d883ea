"""Attack: session fixation, and sessions that outlive their end.

The attacker plants a session cookie of their choosing in the victim's browser (a
sibling subdomain, an injected header, a shared kiosk) and waits for the victim to log
in, hoping the server will then treat that value as the victim's session. A login always
issues a fresh session token; a value the server did not issue never becomes
authenticated. A session that ends (logout, password change) ends on the server, so a
copied cookie replayed afterwards gets 401.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from fleetguard.operators import Role
from tests.api.conftest import new_client
from tests.support import login_password_only, strong_password

SESSION_COOKIE = "__Host-fg_session"
# Where httpx files the cookies that https://testserver sets (a dotless host gets ".local").
COOKIE_DOMAIN = "testserver.local"


def _session_set_by(response: object) -> str:
    headers = response.headers  # type: ignore[attr-defined]
    for key, value in headers.multi_items():
        if key == "set-cookie" and value.startswith(SESSION_COOKIE + "="):
            return str(value.split(";", 1)[0].split("=", 1)[1])
    raise AssertionError("the login set no session cookie")


def _replayed(app: FastAPI, cookie: str) -> int:
    """What a browser that holds only this session cookie gets for its own account."""
    with new_client(app) as c:
        c.cookies.set(SESSION_COOKIE, cookie, domain=COOKIE_DOMAIN, path="/")
        return c.get("/api/v1/me").status_code


def _api_login(client: TestClient, username: str, password: str) -> str:
    r = client.post("/api/v1/auth/login", json={"username": username, "password": password})
    assert r.status_code == 200 and r.json()["step"] == "done", r.text
    return _session_set_by(r)


def _dashboard_login(client: TestClient, username: str, password: str) -> str:
    page = client.get("/login")
    match = re.search(r'name="login_token" value="([^"]*)"', page.text)
    assert match, page.text[:1000]
    r = client.post("/login", data={"username": username, "password": password,
                                    "login_token": match.group(1), "next": "/"},
                    follow_redirects=False)
    assert r.status_code == 303, r.text
    return _session_set_by(r)


LOGINS = {"api": _api_login, "dashboard": _dashboard_login}


@pytest.mark.parametrize("login", LOGINS)
def test_session_fixation_a_planted_cookie_never_becomes_the_victims_session(
    app: FastAPI, add_operator: Callable[[str, Role], str], login: str
) -> None:
    password = add_operator("victim", Role.OPERATOR)
    planted = secrets.token_urlsafe(32)  # the attacker keeps a copy
    with new_client(app) as browser:
        browser.cookies.set(SESSION_COOKIE, planted, domain=COOKIE_DOMAIN, path="/")
        issued = LOGINS[login](browser, "victim", password)
        assert issued != planted
        assert browser.cookies.get(SESSION_COOKIE) == issued
        assert browser.get("/api/v1/me").json()["username"] == "victim"
    assert _replayed(app, planted) == 401
    assert _replayed(app, issued) == 200  # the control: the issued one is a session


def test_session_fixation_every_login_issues_a_new_token(
    app: FastAPI, add_operator: Callable[[str, Role], str]
) -> None:
    """Logging in again from a browser that already holds a valid session does not keep
    (or hand back) that session's token: a token the attacker learnt earlier stays theirs
    alone, it does not become the new login's."""
    password = add_operator("victim", Role.OPERATOR)
    with new_client(app) as browser:
        first = _api_login(browser, "victim", password)
        second = _api_login(browser, "victim", password)
    assert first != second


@pytest.mark.parametrize("where", ["api", "dashboard"])
def test_session_fixation_logout_revokes_the_session_on_the_server(
    app: FastAPI, add_operator: Callable[[str, Role], str], where: str
) -> None:
    password = add_operator("victim", Role.OPERATOR)
    with new_client(app) as browser:
        user = login_password_only(browser, "victim", password)
        stolen = browser.cookies[SESSION_COOKIE]
        assert _replayed(app, stolen) == 200
        if where == "api":
            r = browser.post("/api/v1/auth/logout", headers=user.headers())
            assert r.status_code == 204
        else:
            r = browser.post("/logout", data={"csrf_token": user.csrf}, follow_redirects=False)
            assert r.status_code == 303
    assert _replayed(app, stolen) == 401


def test_session_fixation_password_change_ends_the_other_sessions(
    app: FastAPI, add_operator: Callable[[str, Role], str]
) -> None:
    """The victim, suspecting a stolen session, changes their password: the attacker's
    copy of another session's cookie stops working at once."""
    password = add_operator("victim", Role.OPERATOR)
    with new_client(app) as elsewhere, new_client(app) as here:
        login_password_only(elsewhere, "victim", password)
        stolen = elsewhere.cookies[SESSION_COOKIE]
        user = login_password_only(here, "victim", password)
        assert _replayed(app, stolen) == 200
        r = here.post("/api/v1/me/password", headers=user.headers(),
                      json={"current_password": password, "new_password": strong_password()})
        assert r.status_code == 204, r.text
        assert elsewhere.get("/api/v1/me").status_code == 401
    assert _replayed(app, stolen) == 401
