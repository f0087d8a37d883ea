"""The operator API for devices, groups, certificates and claim batches."""

from __future__ import annotations

from collections.abc import Callable

from fleetguard.operators import Role
from fleetguard.pki import FleetCA
from tests.support import LoggedIn


def _add(user: LoggedIn, name: str, **extra: object) -> dict:  # type: ignore[type-arg]
    r = user.client.post("/api/v1/devices", json={"name": name, **extra}, headers=user.headers())
    assert r.status_code == 201, r.text
    return r.json()  # type: ignore[no-any-return]


def test_register_and_read_a_device(login_as: Callable[[Role], LoggedIn]) -> None:
    op = login_as(Role.OPERATOR)
    created = _add(op, "cam-1", serial="SN1", labels={"site": "berlin"})
    got = op.client.get(f"/api/v1/devices/{created['id']}").json()
    assert got["state"] == "registered" and got["labels"] == {"site": "berlin"}


def test_list_filters_and_paginates(login_as: Callable[[Role], LoggedIn]) -> None:
    op = login_as(Role.OPERATOR)
    for i in range(7):
        _add(op, f"d{i}", labels={"tier": "prod" if i % 2 else "test"})
    first = op.client.get("/api/v1/devices", params={"labels": "tier=prod", "limit": 2}).json()
    assert len(first["devices"]) == 2 and first["next_cursor"]
    rest = op.client.get("/api/v1/devices", params={"labels": "tier=prod", "limit": 2,
                                                     "cursor": first["next_cursor"]}).json()
    assert {d["name"] for d in first["devices"] + rest["devices"]} == {"d1", "d3", "d5"}


def test_bad_filter_values_are_422(login_as: Callable[[Role], LoggedIn]) -> None:
    op = login_as(Role.AUDITOR)
    assert op.client.get("/api/v1/devices", params={"state": "sleeping"}).status_code == 422
    assert op.client.get("/api/v1/devices", params={"cursor": "nonsense"}).status_code == 422
    assert op.client.get("/api/v1/devices", params={"labels": "=,="}).status_code == 422


def test_csv_export_and_import(login_as: Callable[[Role], LoggedIn]) -> None:
    op = login_as(Role.OPERATOR)
    _add(op, "exported", serial="E1", vendor="Acme")
    csv_text = op.client.get("/api/v1/devices/export.csv").text
    assert "exported,E1" in csv_text
    body = "name,serial,vendor,labels\nimp-1,I1,Acme,site=x\nimp-2,I2,Acme,\n"
    r = op.client.post("/api/v1/devices/import", content=body.encode(),
                       headers={**op.headers(), "content-type": "text/csv"})
    assert r.status_code == 201 and r.json() == {"imported": 2}
    bad = op.client.post("/api/v1/devices/import", content=b"name\n\xff\xfe",
                         headers={**op.headers(), "content-type": "text/csv"})
    assert bad.status_code == 422


def test_state_changes_follow_the_lifecycle(login_as: Callable[[Role], LoggedIn]) -> None:
    op = login_as(Role.OPERATOR)
    device = _add(op, "cam")
    r = op.client.post(f"/api/v1/devices/{device['id']}/state", json={"state": "quarantined"},
                       headers=op.headers())
    assert r.status_code == 409 and r.json()["error"]["code"] == "invalid_state_transition"
    r = op.client.post(f"/api/v1/devices/{device['id']}/decommission", json={"reason": "gone"},
                       headers=op.headers())
    assert r.status_code == 200 and r.json()["state"] == "decommissioned"


def test_enrollment_token_carries_the_root_fingerprint(
    login_as: Callable[[Role], LoggedIn], fleet_ca: FleetCA
) -> None:
    op = login_as(Role.OPERATOR)
    device = _add(op, "cam")
    r = op.client.post(f"/api/v1/devices/{device['id']}/enrollment-token", json={},
                       headers=op.headers())
    assert r.status_code == 201
    assert r.json()["token"].endswith("." + fleet_ca.root_fingerprint)


def test_claim_batch_hands_out_key_once_and_lists_without_it(
    login_as: Callable[[Role], LoggedIn],
) -> None:
    admin = login_as(Role.ADMIN)
    r = admin.client.post("/api/v1/claim-batches", json={"name": "b1", "serials": ["S1", "S2"]},
                          headers=admin.headers())
    assert r.status_code == 201
    assert "PRIVATE KEY" in r.json()["claim_key_pem"]
    listed = admin.client.get("/api/v1/claim-batches").json()
    assert listed[0]["serials"] == 2 and "claim_key_pem" not in listed[0]


def test_ca_status_shows_root_and_crl(login_as: Callable[[Role], LoggedIn], fleet_ca: FleetCA) -> None:
    auditor = login_as(Role.AUDITOR)
    body = auditor.client.get("/api/v1/ca").json()
    assert body["root_fingerprint"] == fleet_ca.root_fingerprint
    assert body["issuing_cas"][0]["status"] == "active"
    assert body["crl_next_update"] is not None


def test_revoking_an_unknown_certificate_is_404(login_as: Callable[[Role], LoggedIn]) -> None:
    op = login_as(Role.OPERATOR)
    r = op.client.post("/api/v1/certificates/abc123/revoke", json={}, headers=op.headers())
    assert r.status_code == 404
    r = op.client.post("/api/v1/certificates/abc123/revoke", json={"reason": "because"},
                       headers=op.headers())
    assert r.status_code == 422


def test_a_csv_import_over_the_general_body_limit_is_accepted(
    login_as: Callable[[Role], LoggedIn]
) -> None:
    """The API takes 1 MiB bodies; the CSV import up to 8 MiB (room for its 100,000 rows)."""
    op = login_as(Role.OPERATOR)
    model = "IP camera outdoor dome 4 MP PoE firmware channel stable " * 2
    rows = [f"bulk-{i:05d},S{i:05d},{model},Acme Corporation Networks,site=warehouse-{i % 7}"
            for i in range(6_500)]
    body = ("name,serial,hardware_model,vendor,labels\n" + "\n".join(rows) + "\n").encode()
    assert len(body) > 1024 * 1024
    r = op.client.post("/api/v1/devices/import", content=body,
                       headers={**op.headers(), "content-type": "text/csv"})
    assert r.status_code == 201, r.text
    assert r.json() == {"imported": 6_500}


def test_other_routes_keep_the_general_body_limit(login_as: Callable[[Role], LoggedIn]) -> None:
    op = login_as(Role.OPERATOR)
    r = op.client.post("/api/v1/devices", content=b"{" + b" " * (1024 * 1024) + b"}",
                       headers={**op.headers(), "content-type": "application/json"})
    assert r.status_code == 413 and r.json()["error"]["code"] == "payload_too_large"
