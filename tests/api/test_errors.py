"""Bad input gets a clear 4xx with a stable code, never a 500."""

from __future__ import annotations

from collections.abc import Callable

from fastapi.testclient import TestClient

from fleetguard.operators import Role
from tests.support import LoggedIn


def test_wrong_type_names_the_field(client: TestClient) -> None:
    r = client.post("/api/v1/auth/login", json={"username": "a", "password": 12})
    assert r.status_code == 422
    assert r.json()["error"]["code"] == "validation_failed"
    assert r.json()["error"]["field"] == "password"


def test_missing_field_is_named(client: TestClient) -> None:
    r = client.post("/api/v1/auth/login", json={"username": "a"})
    assert r.status_code == 422
    assert r.json()["error"]["field"] == "password"


def test_malformed_json_is_422(client: TestClient) -> None:
    r = client.post(
        "/api/v1/auth/login", content=b'{"username": ', headers={"content-type": "application/json"}
    )
    assert r.status_code == 422
    assert r.json()["error"]["code"] == "malformed_json"


def test_unknown_fields_are_refused(client: TestClient) -> None:
    r = client.post("/api/v1/auth/login", json={"username": "a", "password": "b", "role": "admin"})
    assert r.status_code == 422
    assert r.json()["error"]["field"] == "role"


def test_oversized_body_is_413(client: TestClient) -> None:
    r = client.post(
        "/api/v1/auth/login", content=b"x" * (1024 * 1024 + 1),
        headers={"content-type": "application/json"},
    )
    assert r.status_code == 413
    assert r.json()["error"]["code"] == "payload_too_large"


def test_oversized_chunked_body_is_413(client: TestClient) -> None:
    def chunks():  # type: ignore[no-untyped-def]
        for _ in range(20):
            yield b"x" * 65536

    r = client.post(
        "/api/v1/auth/login", content=chunks(), headers={"content-type": "application/json"}
    )
    assert r.status_code == 413


def test_unknown_route_is_json_404(client: TestClient) -> None:
    r = client.get("/api/v1/nothing-here")
    assert r.status_code == 404
    assert r.json()["error"]["code"] == "not_found"


def test_weak_password_is_refused_with_reason(login_as: Callable[[Role], LoggedIn]) -> None:
    admin = login_as(Role.ADMIN)
    r = admin.client.post(
        "/api/v1/operators", json={"username": "carol", "role": "auditor", "password": "password123456"},
        headers=admin.headers(),
    )
    assert r.status_code == 422
    assert r.json()["error"]["code"] == "weak_password"


def test_duplicate_operator_is_409(login_as: Callable[[Role], LoggedIn]) -> None:
    admin = login_as(Role.ADMIN)
    body = {"username": "carol", "role": "auditor", "password": "Correct-Horse-Battery-9"}
    assert admin.client.post("/api/v1/operators", json=body, headers=admin.headers()).status_code == 201
    r = admin.client.post("/api/v1/operators", json=body, headers=admin.headers())
    assert r.status_code == 409
    assert r.json()["error"]["code"] == "operator_exists"


def test_security_headers_are_set(client: TestClient) -> None:
    r = client.get("/healthz")
    assert r.headers["x-content-type-options"] == "nosniff"
    assert "frame-ancestors 'none'" in r.headers["content-security-policy"]
    assert r.headers["strict-transport-security"].startswith("max-age=")


def test_metrics_are_prometheus_text(login_as: Callable[[Role], LoggedIn]) -> None:
    user = login_as(Role.AUDITOR)
    r = user.client.get("/metrics")
    assert r.status_code == 200
    assert "fleetguard_http_requests_total" in r.text
