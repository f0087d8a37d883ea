"""Attack: inputs that used to crash a handler (a 500, or a 200 cut off mid-download).

Each now gets a documented 4xx with a reason.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import httpx
import pytest
from fastapi import FastAPI

from fleetguard.operators import Role
from fleetguard.pki import FleetCA
from tests.support import LoggedIn


def test_duplicate_claim_batch_name_is_a_conflict(login_as: Callable[[Role], LoggedIn]) -> None:
    admin = login_as(Role.ADMIN)
    body = {"name": "line-4", "serials": ["SN-1"], "validity_days": 30}
    assert admin.client.post("/api/v1/claim-batches", json=body,
                             headers=admin.headers()).status_code == 201
    again = admin.client.post("/api/v1/claim-batches", json={**body, "serials": ["SN-2"]},
                              headers=admin.headers())
    assert again.status_code == 409
    assert again.json()["error"]["code"] == "claim_batch_exists"


@pytest.mark.parametrize("labels", ["=", "==", "a=b,,", "!"])
def test_device_export_with_a_bad_label_query_is_refused_before_the_download(
    login_as: Callable[[Role], LoggedIn], labels: str
) -> None:
    op = login_as(Role.AUDITOR)
    r = op.client.get("/api/v1/devices/export.csv", params={"labels": labels})
    assert r.status_code == 422, r.text
    assert r.json()["error"]["field"] == "labels"
    assert r.headers["content-type"] == "application/json"


@pytest.mark.parametrize("body", [b"a\rb", b"name\r\n" + b"x" * 200_000 + b"\r\n"],
                         ids=["stray-line-end", "field-over-the-csv-limit"])
def test_device_import_of_malformed_csv_is_a_422(
    login_as: Callable[[Role], LoggedIn], body: bytes
) -> None:
    op = login_as(Role.OPERATOR)
    r = op.client.post("/api/v1/devices/import", content=body,
                       headers={**op.headers(), "Content-Type": "text/csv"})
    assert r.status_code == 422, r.text
    assert r.json()["error"]["field"] == "csv"
    assert op.client.get("/api/v1/devices").json()["devices"] == []


def test_device_import_names_the_line_a_multi_line_record_ends_on(
    login_as: Callable[[Role], LoggedIn]
) -> None:
    op = login_as(Role.OPERATOR)
    body = b'name,vendor\r\ncam-1,ok\r\ncam-2,"Acme\r\nCorp"\r\n'
    r = op.client.post("/api/v1/devices/import", content=body,
                       headers={**op.headers(), "Content-Type": "text/csv"})
    assert r.status_code == 422, r.text
    assert r.json()["error"]["message"].startswith("line 4: vendor")
    assert op.client.get("/api/v1/devices").json()["devices"] == []


def _get(app: FastAPI, path: str) -> httpx.Response:
    async def run() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="https://device") as client:
            return await client.get(path)

    return asyncio.run(run())


@pytest.mark.parametrize("name", ["a" * 300, "\u0661\u0662", "..", "x" * 5000, "ABCDEF"])
def test_unauthenticated_crl_request_with_an_odd_name_is_a_404(
    sqlite_device_app: FastAPI, name: str
) -> None:
    r = _get(sqlite_device_app, f"/v1/crl/{name}.der")
    assert r.status_code == 404, r.text
    assert r.json()["error"]["code"] == "not_found"


def test_published_crl_is_served_by_its_ca_id(sqlite_device_app: FastAPI, fleet_ca: FleetCA) -> None:
    published = fleet_ca.publish_crls([])
    ca_id = published.crls[-1].issuer_ca_id
    r = _get(sqlite_device_app, f"/v1/crl/{ca_id}.der")
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/pkix-crl"
