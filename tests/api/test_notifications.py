"""The notification API: destinations made, changed, rotated, tested and removed by an
admin (audited), read by every role, bad input refused with a code; secrets shown once."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from fleetguard.auditlog import list_audit_entries
from fleetguard.operators import Role
from fleetguard.store import Database
from tests.agent.pki import TestCA
from tests.notify.receivers import HttpsReceiver, verify_signature
from tests.support import LoggedIn

BASE = "/api/v1/notifications"


@pytest.fixture
def admin(login_as: Callable[[Role], LoggedIn]) -> LoggedIn:
    return login_as(Role.ADMIN)


@pytest.fixture
def receiver(tmp_path: Path) -> Iterator[tuple[HttpsReceiver, TestCA]]:
    ca = TestCA.create("api receiver root")
    server = HttpsReceiver(ca, tmp_path / "receiver")
    yield server, ca
    server.close()


def _post(user: LoggedIn, path: str, body: dict[str, Any] | None = None) -> Any:
    return user.client.post(BASE + path, json=body, headers=user.headers())


def _webhook(url: str = "https://soc.example.com/hook?token=t0ps3cret", **more: Any
             ) -> dict[str, Any]:
    return {"kind": "webhook", "name": "soc", "url": url, "min_severity": "medium", **more}


def test_a_new_webhook_shows_its_secret_once_and_never_again(admin: LoggedIn) -> None:
    r = _post(admin, "/destinations", _webhook())
    assert r.status_code == 201, r.text
    created = r.json()
    assert created["secret"].startswith("whsec_")
    assert created["url"] == "https://soc.example.com/hook?REDACTED"
    listed = admin.client.get(BASE + "/destinations")
    one = admin.client.get(f"{BASE}/destinations/{created['id']}")
    for text in (listed.text, one.text):
        assert created["secret"] not in text and "t0ps3cret" not in text
    assert one.json()["deliveries"] == {"pending": 0, "retrying": 0, "delivered": 0,
                                        "failed": 0}


def test_a_syslog_destination_is_made_and_listed(admin: LoggedIn) -> None:
    r = _post(admin, "/destinations", {"kind": "syslog", "name": "siem", "host": "10.0.0.5",
                                       "port": 6514, "transport": "tls"})
    assert r.status_code == 201, r.text
    assert r.json()["secret"] is None
    (listed,) = admin.client.get(BASE + "/destinations").json()
    assert (listed["host"], listed["port"], listed["transport"], listed["facility"]) == \
        ("10.0.0.5", 6514, "tls", "local0")


@pytest.mark.parametrize(("body", "code", "field"), [
    (_webhook("https://169.254.169.254/latest/meta-data"), "destination_address_refused", "url"),
    (_webhook("https://127.0.0.1/x"), "destination_address_refused", "url"),
    (_webhook("http://soc.example.com/x"), "invalid_destination", "url"),
    (_webhook("https://u:p@soc.example.com/x"), "invalid_destination", "url"),
    (_webhook(ca_pem="/etc/ssl/certs/ca.pem"), "invalid_destination", "ca_pem"),
    (_webhook(min_severity="urgent"), "validation_failed", "min_severity"),
    (_webhook(allow_http="yes"), "validation_failed", "allow_http"),
    (_webhook(extra=1), "validation_failed", "extra"),
    ({"kind": "pager", "name": "x"}, "validation_failed", "kind"),
    ({"kind": "syslog", "name": "s", "host": "10.0.0.5", "port": 70000},
     "validation_failed", "port"),
    ({"kind": "syslog", "name": "s", "host": "10.0.0.5", "facility": "nope"},
     "invalid_destination", "facility"),
])
def test_bad_destinations_are_422_with_a_code_and_the_field(
    admin: LoggedIn, body: dict[str, Any], code: str, field: str
) -> None:
    r = _post(admin, "/destinations", body)
    assert r.status_code == 422, r.text
    assert (r.json()["error"]["code"], r.json()["error"]["field"].split(".")[-1]) == (code, field)


def test_a_taken_name_is_409(admin: LoggedIn) -> None:
    assert _post(admin, "/destinations", _webhook()).status_code == 201
    r = _post(admin, "/destinations", _webhook())
    assert (r.status_code, r.json()["error"]["code"]) == (409, "notification_destination_exists")


def test_an_unknown_destination_is_404(admin: LoggedIn) -> None:
    for path in ("/destinations/0d5c4c8e-0000-4000-8000-000000000000", "/destinations/nope"):
        r = admin.client.get(BASE + path)
        assert (r.status_code, r.json()["error"]["code"]) == \
            (404, "notification_destination_not_found")
    r = _post(admin, "/destinations/0d5c4c8e-0000-4000-8000-000000000000/test")
    assert r.status_code == 404


def test_an_update_changes_what_it_names_and_refuses_what_the_kind_lacks(
    admin: LoggedIn,
) -> None:
    ident = _post(admin, "/destinations", _webhook()).json()["id"]
    r = admin.client.patch(f"{BASE}/destinations/{ident}", json={"enabled": False,
                           "min_severity": "critical"}, headers=admin.headers())
    assert r.status_code == 200, r.text
    assert (r.json()["enabled"], r.json()["min_severity"]) == (False, "critical")
    r = admin.client.patch(f"{BASE}/destinations/{ident}", json={"port": 514},
                           headers=admin.headers())
    assert (r.status_code, r.json()["error"]["code"]) == (422, "invalid_destination")
    r = admin.client.patch(f"{BASE}/destinations/{ident}",
                           json={"url": "https://[fd00:ec2::254]/x"}, headers=admin.headers())
    assert (r.status_code, r.json()["error"]["code"]) == (422, "destination_address_refused")


def test_rotating_a_syslog_secret_is_409(admin: LoggedIn) -> None:
    ident = _post(admin, "/destinations", {"kind": "syslog", "name": "s",
                                           "host": "10.0.0.5"}).json()["id"]
    r = _post(admin, f"/destinations/{ident}/rotate-secret")
    assert (r.status_code, r.json()["error"]["code"]) == (409, "not_a_webhook")


def test_a_test_event_reaches_the_receiver_signed_with_the_rotated_secret(
    admin: LoggedIn, receiver: tuple[HttpsReceiver, TestCA]
) -> None:
    server, ca = receiver
    ident = _post(admin, "/destinations", _webhook(
        server.url, allow_private_network=True, ca_pem=ca.pem.decode())).json()["id"]
    secret = _post(admin, f"/destinations/{ident}/rotate-secret").json()["secret"]
    r = _post(admin, f"/destinations/{ident}/test")
    assert r.status_code == 200, r.text
    assert (r.json()["state"], r.json()["last_status"], r.json()["test"]) == \
        ("delivered", 200, True)
    (request,) = server.requests
    assert verify_signature(secret, request.headers, request.body)
    assert request.event["kind"] == "notification.test"
    deliveries = admin.client.get(BASE + "/deliveries",
                                  params={"destination_id": ident}).json()["deliveries"]
    assert [d["state"] for d in deliveries] == ["delivered"]


def test_a_failing_test_says_why(
    admin: LoggedIn, receiver: tuple[HttpsReceiver, TestCA]
) -> None:
    server, ca = receiver
    server.script.answers = [(404, {})]
    ident = _post(admin, "/destinations", _webhook(
        server.url, allow_private_network=True, ca_pem=ca.pem.decode())).json()["id"]
    r = _post(admin, f"/destinations/{ident}/test").json()
    assert (r["state"], r["last_status"]) == ("failed", 404)
    assert "404" in r["last_error"]


def test_deliveries_filter_by_state_and_refuse_a_foreign_cursor(admin: LoggedIn) -> None:
    r = admin.client.get(BASE + "/deliveries", params={"state": "lost"})
    assert (r.status_code, r.json()["error"]["field"]) == (422, "state")
    r = admin.client.get(BASE + "/deliveries", params={"cursor": "bm9wZQ"})
    assert (r.status_code, r.json()["error"]["field"]) == (422, "cursor")


def test_every_change_is_in_the_audit_log(admin: LoggedIn, sqlite_db: Database) -> None:
    ident = _post(admin, "/destinations", _webhook()).json()["id"]
    admin.client.patch(f"{BASE}/destinations/{ident}", json={"enabled": False},
                       headers=admin.headers())
    _post(admin, f"/destinations/{ident}/rotate-secret")
    admin.client.delete(f"{BASE}/destinations/{ident}", headers=admin.headers())
    with sqlite_db.session() as session:
        entries = [e for e in list_audit_entries(session, limit=500)
                   if e.target == f"notification_destination:{ident}"]
    assert [(e.action, e.actor) for e in entries] == [
        (f"notification_destination.{a}", f"operator:{admin.username}")
        for a in ("create", "update", "rotate_secret", "delete")]


def test_an_operator_reads_but_cannot_change(
    admin: LoggedIn, login_as: Callable[[Role], LoggedIn]
) -> None:
    ident = _post(admin, "/destinations", _webhook()).json()["id"]
    for role in (Role.OPERATOR, Role.AUDITOR):
        user = login_as(role)
        assert user.client.get(BASE + "/destinations").status_code == 200
        assert user.client.get(BASE + "/deliveries").status_code == 200
        for path in ("/destinations", f"/destinations/{ident}/test",
                     f"/destinations/{ident}/rotate-secret"):
            r = _post(user, path, _webhook())
            assert (r.status_code, r.json()["error"]["code"]) == (403, "permission_denied")


def test_without_credentials_it_is_401(app: Any) -> None:
    from tests.api.conftest import new_client

    client: TestClient = new_client(app)
    assert client.get(BASE + "/destinations").status_code == 401
