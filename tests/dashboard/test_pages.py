"""The dashboard at the server level: login by forms, roles, CSRF, headers, actions, audit."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import timedelta

import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from sqlalchemy import select

from fleetguard.dashboard import dashboard_router
from fleetguard.dashboard.security import CONTENT_SECURITY_POLICY
from fleetguard.identity import service as identity
from fleetguard.operators import Role
from fleetguard.operators import service as operators
from fleetguard.registry import DeviceState
from fleetguard.registry import service as registry
from fleetguard.store import Database
from fleetguard.store.tables import WebSessionRow
from tests.dashboard.conftest import Browser, EnrolledDevice, form_login, hidden, new_client
from tests.support import strong_password

PUBLIC = {("GET", "/login"), ("POST", "/login"), ("POST", "/login/mfa"),
          ("POST", "/login/enroll")}
INLINE_SCRIPT = re.compile(r"<script(?![^>]*\ssrc=)[^>]*>", re.I)
INLINE_HANDLER = re.compile(r"<[^>]+\son[a-z]+\s*=", re.I)
INLINE_STYLE = re.compile(r"<style|\sstyle\s*=", re.I)


def _api_routes(routes: list[object]) -> list[APIRoute]:
    out: list[APIRoute] = []
    for route in routes:
        if isinstance(route, APIRoute):
            out.append(route)
        elif hasattr(route, "original_router"):  # FastAPI's included-router wrapper
            out += _api_routes(route.original_router.routes)
        elif hasattr(route, "routes") and not hasattr(route, "app"):
            out += _api_routes(route.routes)
    return out


def dashboard_routes() -> list[tuple[str, str, APIRoute]]:
    out = []
    for route in _api_routes(list(dashboard_router.routes)):
        for method in sorted(route.methods or ()):
            out.append((method, route.path, route))
    return out


def concrete(path: str, device_id: str) -> str:
    return (path.replace("{device_id}", device_id).replace("{action}", "suspend")
            .replace("{scan_id}", "00000000-0000-4000-8000-000000000000"))


def assert_safe_page(r: object) -> None:
    headers = r.headers  # type: ignore[attr-defined]
    text = r.text  # type: ignore[attr-defined]
    assert headers["content-security-policy"] == CONTENT_SECURITY_POLICY
    assert "unsafe-inline" not in headers["content-security-policy"]
    assert "frame-ancestors 'none'" in headers["content-security-policy"]
    assert headers["x-frame-options"] == "DENY"
    assert headers["referrer-policy"]
    assert headers["strict-transport-security"]  # the app runs with TLS in these tests
    assert not INLINE_SCRIPT.search(text), INLINE_SCRIPT.search(text)
    assert not INLINE_HANDLER.search(text)
    assert not INLINE_STYLE.search(text)
    assert "http://" not in text.replace('xmlns="http://www.w3.org/2000/svg"', "")


def test_every_dashboard_route_is_protected_and_hidden_from_the_schema(
    anonymous: TestClient, enrolled_device: EnrolledDevice
) -> None:
    routes = dashboard_routes()
    assert len(routes) >= 12
    for method, path, route in routes:
        assert route.include_in_schema is False, path
        if (method, path) in PUBLIC:
            continue
        permissions = [getattr(d.call, "permission", None) for d in route.dependant.dependencies]
        assert any(permissions), f"{method} {path} declares no permission"
        url = concrete(path, enrolled_device.id)
        r = anonymous.request(method, url, follow_redirects=False)
        assert r.status_code in (303, 401), (method, path, r.status_code)
        if not path.endswith("/events"):  # event streams answer 401, browsers reconnect
            assert r.status_code == 303
            assert r.headers["location"].startswith("/login?next="), r.headers["location"]
    # htmx asks for a client-side redirect instead of a swapped login page
    r = anonymous.get("/devices", headers={"HX-Request": "true"}, follow_redirects=False)
    assert r.status_code == 401 and r.headers["hx-redirect"].startswith("/login")


def test_admin_enrolls_totp_and_logs_in_again_with_it(
    app: FastAPI, sqlite_db: Database
) -> None:
    password = strong_password()
    with sqlite_db.session() as s:
        operators.create_operator(s, username="root-admin", password=password,
                                  role=Role.ADMIN, actor="test", issuer=None)
    with new_client(app) as client:
        secret = form_login(client, "root-admin", password)
        assert secret
        r = client.get("/")
        assert r.status_code == 200 and "Fleet overview" in r.text
        assert_safe_page(r)
        r = client.post("/logout", data={"csrf_token": client.cookies["__Host-fg_csrf"]},
                        follow_redirects=False)
        assert r.status_code == 303 and r.headers["location"].startswith("/login")
    with new_client(app) as client:
        # second time: password, then the TOTP step (the code of the next time step,
        # since the enrollment consumed the current one)
        r = client.get("/login")
        token = hidden(r.text, "login_token")
        r = client.post("/login", data={"username": "root-admin", "password": password,
                                        "login_token": token})
        assert 'action="/login/mfa"' in r.text
        challenge = hidden(r.text, "challenge")
        r = client.post("/login/mfa", data={"challenge": challenge, "login_token": token,
                                            "code": "000000"}, follow_redirects=False)
        assert r.status_code != 303
        from tests.support import code_for
        r = client.post("/login/mfa", data={"challenge": challenge, "login_token": token,
                                            "code": code_for(secret, 1)},
                        follow_redirects=False)
        assert r.status_code == 303, r.text
        assert client.get("/").status_code == 200


def test_wrong_password_and_foreign_login_forms_are_refused(anonymous: TestClient,
                                                           sqlite_db: Database) -> None:
    with sqlite_db.session() as s:
        operators.create_operator(s, username="viewer", password=strong_password(),
                                  role=Role.AUDITOR, actor="test", issuer=None)
    r = anonymous.get("/login")
    token = hidden(r.text, "login_token")
    r = anonymous.post("/login", data={"username": "viewer", "password": "wrong-password-1",
                                       "login_token": token})
    assert r.status_code == 401 and 'role="alert"' in r.text
    assert "__Host-fg_session" not in anonymous.cookies
    # a login form that did not come from this browser (login CSRF) is refused
    anonymous.cookies.delete("__Host-fg_login")
    r = anonymous.post("/login", data={"username": "viewer", "password": "x" * 12,
                                       "login_token": token})
    assert r.status_code == 403


def test_login_never_redirects_off_site(app: FastAPI, sqlite_db: Database) -> None:
    password = strong_password()
    with sqlite_db.session() as s:
        operators.create_operator(s, username="viewer", password=password, role=Role.AUDITOR,
                                  actor="test", issuer=None)
    with new_client(app) as client:
        r = client.get("/login?next=//evil.example/x")
        assert hidden(r.text, "next") == "/"
        token = hidden(r.text, "login_token")
        r = client.post("/login", data={"username": "viewer", "password": password,
                                        "login_token": token, "next": "https://evil.example"},
                        follow_redirects=False)
        assert r.status_code == 303 and r.headers["location"] == "/"


@pytest.mark.parametrize("role", list(Role))
def test_every_page_renders_for_each_role(
    role: Role, browser_as: Callable[[Role], Browser], enrolled_device: EnrolledDevice
) -> None:
    b = browser_as(role)
    pages = {
        "/": 200, "/devices": 200, "/devices?state=registered&q=cam&labels=site%3Dberlin": 200,
        f"/devices/{enrolled_device.id}": 200, "/certificates": 200,
        "/certificates?show=expiring": 200, "/certificates?show=revoked": 200,
        "/audit": 200, "/operators": 200 if role is Role.ADMIN else 403,
        f"/devices/{enrolled_device.id}/confirm/suspend":
            403 if role is Role.AUDITOR else 200,
        "/login": 200,
    }
    for url, status in pages.items():
        r = b.client.get(url)
        assert r.status_code == status, (role, url, r.status_code, r.text[:500])
        assert_safe_page(r)
    r = b.client.get("/")
    assert f'href="/devices?state={DeviceState.REGISTERED.value}"' in r.text
    assert ('href="/operators"' in r.text) is (role is Role.ADMIN)


def test_auditor_sees_no_actions_and_every_way_to_act_is_refused(
    browser_as: Callable[[Role], Browser], enrolled_device: EnrolledDevice,
    sqlite_db: Database,
) -> None:
    b = browser_as(Role.AUDITOR)
    r = b.client.get(f"/devices/{enrolled_device.id}")
    assert r.status_code == 200
    assert "/confirm/" not in r.text and "Revoke" not in r.text and "Decommission" not in r.text
    assert enrolled_device.serial_hex in r.text
    for action in ("revoke", "decommission", "suspend", "quarantine"):
        r = b.client.post(f"/devices/{enrolled_device.id}/actions/{action}",
                          data={"csrf_token": b.csrf, "serial": enrolled_device.serial_hex})
        assert r.status_code == 403, (action, r.status_code)
    # the API refuses it too, with the same session
    r = b.client.post(f"/api/v1/certificates/{enrolled_device.serial_hex}/revoke",
                      json={"reason": "key_compromise"}, headers={"X-CSRF-Token": b.csrf})
    assert r.status_code == 403
    with sqlite_db.session() as s:
        cert = identity.list_certificates(s, device_id=enrolled_device.id)[0]
        assert cert.revoked_at is None
        assert registry.get_device(s, enrolled_device.id).state is DeviceState.ACTIVE


def test_operator_revokes_after_confirmation_and_it_lands_in_the_audit_log(
    browser_as: Callable[[Role], Browser], enrolled_device: EnrolledDevice,
) -> None:
    b = browser_as(Role.OPERATOR)
    page = b.client.get(f"/devices/{enrolled_device.id}").text
    confirm = f"/devices/{enrolled_device.id}/confirm/revoke?serial={enrolled_device.serial_hex}"
    assert confirm in page
    r = b.client.get(confirm)
    assert r.status_code == 200 and "Confirm: revoke" in r.text
    csrf = hidden(r.text, "csrf_token")
    r = b.client.post(f"/devices/{enrolled_device.id}/actions/revoke",
                      data={"csrf_token": csrf, "serial": enrolled_device.serial_hex,
                            "revocation_reason": "key_compromise"}, follow_redirects=False)
    assert r.status_code == 303, r.text
    r = b.client.get(r.headers["location"])
    assert "revoked" in r.text and "key_compromise" in r.text
    r = b.client.get("/audit?action=certificate.revoke")
    assert f"certificate:{enrolled_device.serial_hex}" in r.text
    assert "operator:operator-web" in r.text
    assert 'class="ok" id="chain-result"' in r.text
    r = b.client.get("/certificates?show=revoked")
    assert enrolled_device.serial_hex in r.text
    # a certificate of another device cannot be revoked through this device's page
    r = b.client.post(f"/devices/{enrolled_device.id}/actions/revoke",
                      data={"csrf_token": csrf, "serial": "abc123"})
    assert r.status_code == 422


def test_state_changes_need_confirmation_csrf_and_stream_live(
    browser_as: Callable[[Role], Browser], enrolled_device: EnrolledDevice,
    sqlite_db: Database,
) -> None:
    b = browser_as(Role.OPERATOR)
    url = f"/devices/{enrolled_device.id}/actions/suspend"
    assert b.client.post(url, data={}).status_code == 403  # no CSRF token
    assert b.client.post(url, data={"csrf_token": "forged"}).status_code == 403
    with sqlite_db.session() as s:
        assert registry.get_device(s, enrolled_device.id).state is DeviceState.ACTIVE
    r = b.client.post(url, data={"csrf_token": b.csrf, "reason": "maintenance"},
                      follow_redirects=False)
    assert r.status_code == 303
    # htmx sends the token as a header instead of a form field
    r = b.client.post(f"/devices/{enrolled_device.id}/actions/quarantine",
                      data={"reason": "odd traffic"}, headers={"X-CSRF-Token": b.csrf},
                      follow_redirects=False)
    assert r.status_code == 303
    r = b.client.post(f"/devices/{enrolled_device.id}/actions/decommission",
                      data={"csrf_token": b.csrf}, follow_redirects=False)
    assert r.status_code == 303
    # an impossible transition is explained on the page, not a 500
    r = b.client.post(f"/devices/{enrolled_device.id}/actions/activate",
                      data={"csrf_token": b.csrf})
    assert r.status_code == 409 and "cannot become active" in r.text
    r = b.client.get(f"/devices/{enrolled_device.id}")
    assert "Decommission" not in r.text and "Revoke…" not in r.text  # final, all revoked
    r = b.client.get("/events?after=0&seconds=0.5")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
    for state in ("suspended", "quarantined", "decommissioned"):
        assert f'"state": "{state}"' in r.text
    assert enrolled_device.id in r.text


def test_ended_or_unknown_sessions_go_back_to_login(
    browser_as: Callable[[Role], Browser],
) -> None:
    b = browser_as(Role.OPERATOR)
    jar = b.client.cookies.jar
    old = next(c for c in jar if c.name == "__Host-fg_session")
    r = b.client.post("/logout", data={"csrf_token": b.csrf}, follow_redirects=False)
    assert r.status_code == 303
    assert "__Host-fg_session" not in b.client.cookies
    jar.set_cookie(old)  # the browser replays the ended session's cookie
    assert b.client.cookies["__Host-fg_session"] == old.value
    r = b.client.get("/devices?state=active", follow_redirects=False)
    assert r.status_code == 303
    assert r.headers["location"] == "/login?next=/devices&expired=1"
    r = b.client.get(r.headers["location"])
    assert "Your session ended" in r.text and hidden(r.text, "next") == "/devices"


def test_idle_session_expiry_sends_the_browser_to_login(
    browser_as: Callable[[Role], Browser], sqlite_db: Database,
) -> None:
    b = browser_as(Role.AUDITOR)
    assert b.client.get("/audit").status_code == 200
    with sqlite_db.session() as s:  # 31 minutes without a request
        for row in s.execute(select(WebSessionRow)).scalars():
            row.last_seen_at -= timedelta(minutes=31)
    r = b.client.get("/audit", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"].startswith("/login?next=/audit")
    r = b.client.post("/logout", data={"csrf_token": b.csrf}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"].startswith("/login")


def test_device_list_filters_and_paginates(
    browser_as: Callable[[Role], Browser], sqlite_db: Database,
) -> None:
    with sqlite_db.session() as s:
        for i in range(60):
            registry.register_device(s, name=f"sensor-{i:02d}", serial=f"S{i:03d}",
                                     labels={"site": "oslo" if i % 2 else "rome"}, actor="t")
    b = browser_as(Role.AUDITOR)
    r = b.client.get("/devices")
    assert r.text.count('href="/devices/') == 50
    nxt = re.search(r'href="(/devices\?cursor=[^"]+)" rel="next"', r.text)
    assert nxt
    r = b.client.get(nxt.group(1).replace("&amp;", "&"))
    assert r.text.count('href="/devices/') == 10 and "sensor-59" in r.text
    r = b.client.get("/devices?labels=site%3Doslo")
    assert r.text.count('href="/devices/') == 30
    r = b.client.get("/devices?q=sensor-4")
    assert r.text.count('href="/devices/') == 10
    r = b.client.get("/devices?labels=Bad%20Key")
    assert r.status_code == 422 and 'role="alert"' in r.text


def test_static_files_and_vendored_licence_are_served(anonymous: TestClient) -> None:
    for path in ("/static/css/dashboard.css", "/static/js/dashboard.js",
                 "/static/vendor/htmx/htmx.min.js", "/static/vendor/htmx/LICENSE"):
        assert anonymous.get(path).status_code == 200, path
    assert anonymous.get("/static/../app.py").status_code == 404


def test_device_page_draws_stored_series_as_inline_svg(
    browser_as: Callable[[Role], Browser], enrolled_device: EnrolledDevice,
    sqlite_db: Database,
) -> None:
    from datetime import timedelta as td

    from fleetguard.core.clock import utcnow
    from fleetguard.telemetry import IngestService
    from tests.telemetry.support import body, report

    ingest = IngestService(sqlite_db, sweep_every_s=None, compact_every_s=None, linger_s=0.01)
    ingest.start()
    try:
        start = utcnow() - td(minutes=30)
        for seq in range(1, 13):
            message = report(seq, start + td(minutes=2 * seq), cpu_percent=5.0 * seq)
            ingest.submit_telemetry(enrolled_device.id, body(message), "application/cbor")
        assert ingest.flush()
    finally:
        ingest.stop()
    b = browser_as(Role.AUDITOR)
    r = b.client.get(f"/devices/{enrolled_device.id}")
    assert r.status_code == 200
    assert "never reported telemetry" not in r.text and "online" in r.text
    # Every stored metric is a chart with its unit; CPU among them, drawn inside its frame.
    assert 'id="chart-cpu_percent"' in r.text and ">%</text>" in r.text
    [(width, height)] = set(re.findall(r'<svg viewBox="0 0 (\d+) (\d+)"', r.text))
    charts = re.findall(r'<polyline class="series" points="([^"]+)"', r.text)
    assert charts, r.text
    for points in charts:
        for pair in points.split():
            x, y = (float(v) for v in pair.split(","))
            assert 0 <= x <= int(width) and 0 <= y <= int(height)
    assert_safe_page(r)
