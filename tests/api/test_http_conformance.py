"""The API answers as its OpenAPI document says: methods and Allow, documented errors,
security, request models that accept exactly what they publish, streamed errors."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.responses import StreamingResponse
from fastapi.testclient import TestClient

from fleetguard.api.errors import install_error_handlers
from fleetguard.api.middleware import StreamErrorMiddleware
from fleetguard.core.errors import ValidationFailedError
from fleetguard.operators import Role
from tests.support import LoggedIn


@pytest.fixture
def document(login_as: Callable[[Role], LoggedIn]) -> dict[str, Any]:
    admin = login_as(Role.ADMIN)
    r = admin.client.get("/api/v1/openapi.json")
    assert r.status_code == 200
    doc: dict[str, Any] = r.json()
    return doc


def test_options_lists_every_method_of_the_resource(client: TestClient) -> None:
    r = client.options("/api/v1/devices")
    assert r.status_code == 204
    assert r.headers["allow"] == "GET, OPTIONS, POST"
    r = client.options("/api/v1/groups/g/members/d")
    assert r.headers["allow"] == "DELETE, OPTIONS, PUT"


def test_a_concrete_path_is_its_own_resource(client: TestClient) -> None:
    """/devices/import is not /devices/{device_id}: its Allow says POST only."""
    r = client.options("/api/v1/devices/import")
    assert r.headers["allow"] == "OPTIONS, POST"
    r = client.options("/api/v1/devices/export.csv")
    assert r.headers["allow"] == "GET, OPTIONS"


@pytest.mark.parametrize("method", ["PUT", "TRACE", "HEAD"])
def test_405_names_every_allowed_method(client: TestClient, method: str) -> None:
    r = client.request(method, "/api/v1/devices")
    assert r.status_code == 405
    assert r.headers["allow"] == "GET, OPTIONS, POST"
    if method != "HEAD":
        assert r.json()["error"]["code"] == "method_not_allowed"


def test_unknown_path_is_404_for_options_too(client: TestClient) -> None:
    assert client.options("/api/v1/nothing").status_code == 404


def test_every_operation_documents_its_errors_and_security(document: dict[str, Any]) -> None:
    public = {("post", "/api/v1/auth/login"), ("post", "/api/v1/auth/mfa"),
              ("post", "/api/v1/auth/mfa/enroll"), ("post", "/api/v1/auth/mfa/enroll/confirm"),
              ("get", "/healthz")}
    assert set(document["components"]["securitySchemes"]) == {"bearerToken", "session"}
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            statuses = set(operation["responses"])
            if (method, path) in public:
                assert "security" not in operation, (method, path)
            else:
                assert operation["security"] == [{"bearerToken": []}, {"session": []}]
                assert {"401", "403"} <= statuses, (method, path)
            assert "400" in statuses, (method, path)  # not valid HTTP: from the server
            if path not in ("/healthz", "/metrics"):
                assert {"404", "409", "413", "422", "429"} <= statuses, (method, path)
            for status in statuses - {"200", "201", "202", "204"}:
                content = operation["responses"][status]["content"]
                assert content["application/json"]["schema"] == {
                    "$ref": "#/components/schemas/ErrorResponse"}
                assert set(content) == ({"application/json", "text/plain"} if status == "400"
                                        else {"application/json"})


@pytest.mark.parametrize("ttl", [True, "24", 1.5, None])
def test_integers_are_json_integers(login_as: Callable[[Role], LoggedIn], ttl: object) -> None:
    admin = login_as(Role.ADMIN)
    r = admin.client.post("/api/v1/tokens", json={"name": "t", "ttl_days": ttl},
                          headers=admin.headers())
    assert r.status_code == 422, r.text
    assert r.json()["error"]["field"] == "ttl_days"


def test_an_integral_float_is_an_integer(login_as: Callable[[Role], LoggedIn]) -> None:
    admin = login_as(Role.ADMIN)
    r = admin.client.post("/api/v1/tokens", json={"name": "t", "ttl_days": 3.0},
                          headers=admin.headers())
    assert r.status_code == 201, r.text


@pytest.mark.parametrize(("body", "field"), [
    ({"name": "g", "kind": "dynamic"}, "label_query"),
    ({"name": "g", "kind": "dynamic", "label_query": "=x"}, "label_query"),
    ({"name": "g", "kind": "static", "label_query": "a=b"}, "label_query"),
    ({"name": "g", "kind": "neither"}, "kind"),
    ({"name": " ", "kind": "static"}, "name"),
])
def test_group_bodies_are_checked_as_published(
    login_as: Callable[[Role], LoggedIn], body: dict[str, Any], field: str
) -> None:
    admin = login_as(Role.ADMIN)
    r = admin.client.post("/api/v1/groups", json=body, headers=admin.headers())
    assert r.status_code == 422, r.text
    assert field in r.json()["error"]["field"]


def test_labels_and_addresses_are_checked_as_published(
    login_as: Callable[[Role], LoggedIn],
) -> None:
    admin = login_as(Role.ADMIN)
    r = admin.client.post("/api/v1/devices", json={"name": "cam", "labels": {"Bad Key": "x"}},
                          headers=admin.headers())
    assert r.status_code == 422
    r = admin.client.post("/api/v1/devices", json={"name": "cam", "labels": {"site": "berlin"}},
                          headers=admin.headers())
    assert r.status_code == 201
    device = r.json()["id"]
    r = admin.client.patch(f"/api/v1/devices/{device}", json={"addresses": [""]},
                           headers=admin.headers())
    assert r.status_code == 422
    r = admin.client.patch(f"/api/v1/devices/{device}", json={"addresses": ["192.0.2.7", "::1"]},
                           headers=admin.headers())
    assert r.status_code == 200
    assert r.json()["addresses"] == ["192.0.2.7", "::1"]


def _streaming_app(fail_at: int) -> FastAPI:
    app = FastAPI()
    install_error_handlers(app)

    @app.get("/export")
    def export() -> StreamingResponse:
        def rows() -> Iterator[str]:
            for i in range(3):
                if i == fail_at:
                    raise ValidationFailedError("bad filter", field="labels")
                yield f"row{i}\n"

        return StreamingResponse(rows(), media_type="text/csv")

    app.add_middleware(StreamErrorMiddleware)
    return app


def test_a_stream_that_fails_before_its_first_byte_answers_with_the_error() -> None:
    with TestClient(_streaming_app(fail_at=0), raise_server_exceptions=False) as client:
        r = client.get("/export")
    assert r.status_code == 422
    assert r.json()["error"] == {"code": "validation_failed", "message": "bad filter",
                                 "field": "labels"}


def test_a_stream_that_succeeds_is_untouched() -> None:
    with TestClient(_streaming_app(fail_at=99)) as client:
        r = client.get("/export")
    assert r.status_code == 200
    assert r.text == "row0\nrow1\nrow2\n"
    assert r.headers["content-type"].startswith("text/csv")


def test_an_audit_cursor_beyond_the_databases_integers_is_refused(
    login_as: Callable[[Role], LoggedIn],
) -> None:
    """?before=<34 digits> overflowed SQLite's INTEGER: a 500 (found by the fuzzer)."""
    admin = login_as(Role.ADMIN)
    r = admin.client.get("/api/v1/audit-log", params={"before": str(10**33)})
    assert r.status_code == 422, r.text
    assert r.json()["error"]["field"] == "before"
    r = admin.client.get("/api/v1/audit-log", params={"before": str(2**63 - 1)})
    assert r.status_code == 200, r.text
