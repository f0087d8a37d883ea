"""Attack: cross-site request forgery against a logged-in operator's browser.

A page on another site makes the operator's browser send an unsafe request to fleetguard;
the browser attaches the session cookie (and the CSRF cookie) by itself, but the page can
neither read the CSRF token nor set the ``X-CSRF-Token`` header. At best it knows a CSRF
token of its own session (the attacker has an account too). Every such request, to the
API (POST, PATCH, DELETE) or to a dashboard form, is refused with 403 ``csrf_failed`` (an
HTML "Form expired" page on the dashboard) and changes nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pytest
from fastapi import FastAPI

from fleetguard.operators import Role
from fleetguard.registry import DeviceState
from fleetguard.registry import service as registry
from fleetguard.store import Database
from tests.api.conftest import new_client
from tests.support import LoggedIn, login_password_only

CSRF_COOKIE = "__Host-fg_csrf"
SESSION_COOKIE = "__Host-fg_session"


@dataclass
class Scene:
    victim: LoggedIn  # an operator, logged in; their browser holds both cookies
    attacker_csrf: str  # a valid CSRF token, of the attacker's own session
    device_id: str
    token_id: str  # an API token of the victim's
    token: str


@pytest.fixture
def scene(
    app: FastAPI, sqlite_db: Database, login_as: Callable[[Role], LoggedIn],
    add_operator: Callable[[str, Role], str],
) -> Scene:
    victim = login_as(Role.OPERATOR)
    password = add_operator("mallory", Role.OPERATOR)
    attacker = login_password_only(new_client(app), "mallory", password)
    with sqlite_db.session() as session:
        device_id = registry.register_device(session, name="cam-1", actor="test").id
        registry.set_device_state(session, device_id, DeviceState.ACTIVE, actor="test",
                                  reason="enrolled")
    r = victim.client.post("/api/v1/tokens", json={"name": "ci"}, headers=victim.headers())
    assert r.status_code == 201, r.text
    assert victim.client.cookies.get(CSRF_COOKIE) == victim.csrf  # the browser has it
    return Scene(victim, attacker.csrf, device_id, r.json()["info"]["token_id"],
                 r.json()["token"])


FORGED = ["no token", "another session's token"]


def _forged_headers(scene: Scene, how: str) -> dict[str, str]:
    if how == "no token":
        return {}
    return {"X-CSRF-Token": scene.attacker_csrf}


def _refused(r: object) -> None:
    assert r.status_code == 403, r.text  # type: ignore[attr-defined]
    assert r.json()["error"]["code"] == "csrf_failed"  # type: ignore[attr-defined]


def _device(db: Database, device_id: str) -> tuple[str, dict[str, str], DeviceState]:
    with db.read_session() as session:
        d = registry.get_device(session, device_id)
    return d.name, d.labels, d.state


@pytest.mark.parametrize("how", FORGED)
def test_csrf_forged_api_post_is_refused_and_creates_nothing(
    scene: Scene, sqlite_db: Database, how: str
) -> None:
    client = scene.victim.client
    before = client.get("/api/v1/devices").json()
    r = client.post("/api/v1/devices", json={"name": "planted"},
                    headers=_forged_headers(scene, how))
    _refused(r)
    r = client.post(f"/api/v1/devices/{scene.device_id}/state",
                    json={"state": "suspended", "reason": "csrf"},
                    headers=_forged_headers(scene, how))
    _refused(r)
    assert client.get("/api/v1/devices").json() == before
    assert _device(sqlite_db, scene.device_id)[2] is DeviceState.ACTIVE


@pytest.mark.parametrize("how", FORGED)
def test_csrf_forged_api_patch_is_refused_and_changes_nothing(
    scene: Scene, sqlite_db: Database, how: str
) -> None:
    before = _device(sqlite_db, scene.device_id)
    r = scene.victim.client.patch(f"/api/v1/devices/{scene.device_id}",
                                  json={"name": "pwned", "labels": {"owner": "mallory"}},
                                  headers=_forged_headers(scene, how))
    _refused(r)
    assert _device(sqlite_db, scene.device_id) == before


@pytest.mark.parametrize("how", FORGED)
def test_csrf_forged_api_delete_is_refused_and_the_token_still_works(
    app: FastAPI, scene: Scene, how: str
) -> None:
    r = scene.victim.client.delete(f"/api/v1/tokens/{scene.token_id}",
                                   headers=_forged_headers(scene, how))
    _refused(r)
    with new_client(app) as other:
        me = other.get("/api/v1/me", headers={"Authorization": f"Bearer {scene.token}"})
    assert me.status_code == 200
    assert me.json()["username"] == scene.victim.username


def test_csrf_the_real_token_is_accepted(scene: Scene, sqlite_db: Database) -> None:
    """The control: the same request with the session's own token does change the device
    (so the refusals above are the CSRF check's, not some other failure's)."""
    r = scene.victim.client.patch(f"/api/v1/devices/{scene.device_id}", json={"name": "ok"},
                                  headers=scene.victim.headers())
    assert r.status_code == 200, r.text
    assert _device(sqlite_db, scene.device_id)[0] == "ok"


DASHBOARD_FORMS = {
    "suspend": ("/devices/{id}/actions/suspend", {"reason": "csrf"}),
    "decommission": ("/devices/{id}/actions/decommission", {"reason": "csrf"}),
    "edit": ("/devices/{id}/edit", {"name": "pwned", "labels": "owner=mallory"}),
}


@pytest.mark.parametrize("how", FORGED)
@pytest.mark.parametrize("form", DASHBOARD_FORMS)
def test_csrf_forged_dashboard_form_post_is_refused_and_changes_nothing(
    scene: Scene, sqlite_db: Database, form: str, how: str
) -> None:
    path, data = DASHBOARD_FORMS[form]
    if how == "another session's token":
        data = {**data, "csrf_token": scene.attacker_csrf}
    before = _device(sqlite_db, scene.device_id)
    r = scene.victim.client.post(path.format(id=scene.device_id), data=data,
                                 follow_redirects=False)
    assert r.status_code == 403, r.text
    assert "Form expired" in r.text
    assert _device(sqlite_db, scene.device_id) == before
    # The control: the same form with the session's own token goes through.
    r = scene.victim.client.post(path.format(id=scene.device_id),
                                 data={**data, "csrf_token": scene.victim.csrf},
                                 follow_redirects=False)
    assert r.status_code == 303, r.text
    assert _device(sqlite_db, scene.device_id) != before


@pytest.mark.parametrize("how", FORGED)
def test_csrf_forged_dashboard_logout_does_not_end_the_session(
    scene: Scene, how: str
) -> None:
    data = {} if how == "no token" else {"csrf_token": scene.attacker_csrf}
    r = scene.victim.client.post("/logout", data=data, follow_redirects=False)
    assert r.status_code == 403
    assert scene.victim.client.get("/api/v1/me").status_code == 200


def test_csrf_a_login_form_posted_from_another_site_signs_nobody_in(
    app: FastAPI, add_operator: Callable[[str, Role], str],
) -> None:
    """Login CSRF: a page elsewhere posts the attacker's own credentials to /login, to sign
    the victim's browser in as the attacker. The form lacks this browser's login token, so
    it is refused as an expired form and no session is set."""
    password = add_operator("attacker", Role.AUDITOR)
    with new_client(app) as victim:
        r = victim.post("/login", data={"username": "attacker", "password": password,
                                         "login_token": "forged", "next": "/"},
                        follow_redirects=False)
        assert r.status_code == 403
        assert "The login form expired" in r.text
        assert SESSION_COOKIE not in victim.cookies
