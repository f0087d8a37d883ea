"""Every route of the OpenAPI document against the declared access matrix.

A route added without an entry here fails `test_every_route_is_in_the_matrix`.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from fleetguard.operators import Role
from fleetguard.operators import service as operators
from fleetguard.operators import tokens as api_tokens
from fleetguard.store import Database
from tests.api.conftest import new_client
from tests.support import strong_password

PUBLIC = "public"
ALL = frozenset(Role)
ADMIN = frozenset({Role.ADMIN})
WRITE = frozenset({Role.ADMIN, Role.OPERATOR})

MATRIX: dict[tuple[str, str], frozenset[Role] | str] = {
    ("GET", "/healthz"): PUBLIC,
    ("GET", "/metrics"): ALL,
    ("POST", "/api/v1/auth/login"): PUBLIC,
    ("POST", "/api/v1/auth/mfa"): PUBLIC,
    ("POST", "/api/v1/auth/mfa/enroll"): PUBLIC,
    ("POST", "/api/v1/auth/mfa/enroll/confirm"): PUBLIC,
    ("POST", "/api/v1/auth/logout"): ALL,
    ("GET", "/api/v1/me"): ALL,
    ("POST", "/api/v1/me/password"): ALL,
    ("GET", "/api/v1/operators"): ADMIN,
    ("POST", "/api/v1/operators"): ADMIN,
    ("GET", "/api/v1/operators/{username}"): ADMIN,
    ("POST", "/api/v1/operators/{username}/disable"): ADMIN,
    ("POST", "/api/v1/operators/{username}/enable"): ADMIN,
    ("POST", "/api/v1/operators/{username}/reset-mfa"): ADMIN,
    ("GET", "/api/v1/tokens"): ALL,
    ("POST", "/api/v1/tokens"): ALL,
    ("DELETE", "/api/v1/tokens/{token_id}"): ALL,
    ("GET", "/api/v1/audit-log"): ALL,
    ("GET", "/api/v1/audit-log/head"): ALL,
    ("GET", "/api/v1/audit-log/verify"): ALL,
    ("GET", "/api/v1/devices"): ALL,
    ("POST", "/api/v1/devices"): WRITE,
    ("GET", "/api/v1/devices/export.csv"): ALL,
    ("POST", "/api/v1/devices/import"): WRITE,
    ("GET", "/api/v1/devices/{device_id}"): ALL,
    ("PATCH", "/api/v1/devices/{device_id}"): WRITE,
    ("POST", "/api/v1/devices/{device_id}/state"): WRITE,
    ("POST", "/api/v1/devices/{device_id}/decommission"): WRITE,
    ("POST", "/api/v1/devices/{device_id}/enrollment-token"): WRITE,
    ("GET", "/api/v1/devices/{device_id}/certificates"): ALL,
    ("GET", "/api/v1/groups"): ALL,
    ("POST", "/api/v1/groups"): WRITE,
    ("PUT", "/api/v1/groups/{group}/members/{device_id}"): WRITE,
    ("DELETE", "/api/v1/groups/{group}/members/{device_id}"): WRITE,
    ("GET", "/api/v1/certificates"): ALL,
    ("GET", "/api/v1/certificates/shared-identity"): ALL,
    ("POST", "/api/v1/certificates/{serial}/revoke"): WRITE,
    ("GET", "/api/v1/ca"): ALL,
    ("GET", "/api/v1/claim-batches"): ALL,
    ("POST", "/api/v1/claim-batches"): ADMIN,
    ("POST", "/api/v1/claim-batches/{batch_id}/revoke"): ADMIN,
    ("POST", "/api/v1/claim-serials/{serial}/reopen"): WRITE,
    ("GET", "/api/v1/alarms"): ALL,
    ("GET", "/api/v1/alarms/{alarm_id}"): ALL,
    ("GET", "/api/v1/devices/{device_id}/alarms"): ALL,
    ("POST", "/api/v1/alarms/{alarm_id}/acknowledge"): WRITE,
    ("POST", "/api/v1/alarms/{alarm_id}/resolve"): WRITE,
    ("POST", "/api/v1/alarms/{alarm_id}/verdict"): WRITE,
    ("GET", "/api/v1/detection/rulesets/fleet"): ALL,
    ("PUT", "/api/v1/detection/rulesets/fleet"): ADMIN,
    ("GET", "/api/v1/detection/rulesets/fleet/versions"): ALL,
    ("GET", "/api/v1/detection/rulesets/fleet/versions/{version}"): ALL,
    ("GET", "/api/v1/detection/rulesets/fleet/diff"): ALL,
    ("POST", "/api/v1/detection/rulesets/fleet/dry-run"): ADMIN,
    ("GET", "/api/v1/detection/rulesets/groups/{group}"): ALL,
    ("PUT", "/api/v1/detection/rulesets/groups/{group}"): ADMIN,
    ("GET", "/api/v1/detection/rulesets/groups/{group}/versions"): ALL,
    ("GET", "/api/v1/detection/rulesets/groups/{group}/versions/{version}"): ALL,
    ("GET", "/api/v1/detection/rulesets/groups/{group}/diff"): ALL,
    ("POST", "/api/v1/detection/rulesets/groups/{group}/dry-run"): ADMIN,
    ("GET", "/api/v1/detection/feedback"): ALL,
    ("DELETE", "/api/v1/detection/feedback/{feedback_id}"): WRITE,
    ("GET", "/api/v1/detection/status"): ALL,
    ("GET", "/api/v1/notifications/destinations"): ALL,
    ("POST", "/api/v1/notifications/destinations"): ADMIN,
    ("GET", "/api/v1/notifications/destinations/{destination_id}"): ALL,
    ("PATCH", "/api/v1/notifications/destinations/{destination_id}"): ADMIN,
    ("DELETE", "/api/v1/notifications/destinations/{destination_id}"): ADMIN,
    ("POST", "/api/v1/notifications/destinations/{destination_id}/rotate-secret"): ADMIN,
    ("POST", "/api/v1/notifications/destinations/{destination_id}/test"): ADMIN,
    ("GET", "/api/v1/notifications/deliveries"): ALL,
    ("POST", "/api/v1/scans"): WRITE,
    ("GET", "/api/v1/scans"): ALL,
    ("GET", "/api/v1/scans/{scan_id}"): ALL,
    ("GET", "/api/v1/scans/{scan_id}/report"): ALL,
    ("GET", "/api/v1/findings"): ALL,
    ("GET", "/api/v1/findings/summary"): ALL,
    ("GET", "/api/v1/devices/{device_id}/findings"): ALL,
    ("GET", "/api/v1/devices/{device_id}/telemetry"): ALL,
    ("GET", "/api/v1/devices/{device_id}/telemetry/{metric}"): ALL,
    ("GET", "/api/v1/scan-schedules"): ALL,
    ("POST", "/api/v1/scan-schedules"): WRITE,
    ("DELETE", "/api/v1/scan-schedules/{schedule_id}"): WRITE,
}


def _operations(app: FastAPI) -> Iterator[tuple[str, str]]:
    for path, item in app.openapi()["paths"].items():
        for method in item:
            yield method.upper(), path


def _concrete(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "no-such-thing", path)


@pytest.fixture
def tokens(sqlite_db: Database) -> dict[Role, str]:
    out = {}
    with sqlite_db.session() as session:
        for role in Role:
            name = f"matrix-{role.value}"
            operators.create_operator(
                session, username=name, password=strong_password(), role=role, actor="test", issuer=None
            )
            out[role] = api_tokens.create_api_token(
                session, username=name, name="matrix", role=None, ttl=None, actor="test", issuer=None
            ).token
    return out


def _call(client: TestClient, method: str, path: str, token: str | None) -> int:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    kwargs: dict[str, object] = {"headers": headers}
    if method in ("POST", "PUT", "PATCH"):
        kwargs["json"] = {}
    return client.request(method, _concrete(path), **kwargs).status_code  # type: ignore[arg-type]


def test_every_route_is_in_the_matrix(app: FastAPI) -> None:
    missing = sorted(set(_operations(app)) - set(MATRIX))
    assert not missing, f"routes without a declared access rule: {missing}"
    stale = sorted(set(MATRIX) - set(_operations(app)))
    assert not stale, f"matrix entries for routes that no longer exist: {stale}"


def test_unauthenticated_calls_get_401_except_public_routes(app: FastAPI) -> None:
    client = new_client(app)
    for method, path in _operations(app):
        status = _call(client, method, path, None)
        if MATRIX[(method, path)] == PUBLIC:
            assert status != 401, (method, path)
        else:
            assert status == 401, (method, path, status)


@pytest.mark.parametrize("role", list(Role))
def test_each_role_gets_exactly_what_the_matrix_allows(
    app: FastAPI, tokens: dict[Role, str], role: Role
) -> None:
    client = new_client(app)
    for method, path in _operations(app):
        rule = MATRIX[(method, path)]
        if rule == PUBLIC:
            continue
        status = _call(client, method, path, tokens[role])
        if role in rule:
            assert status not in (401, 403), (role, method, path, status)
        else:
            assert status == 403, (role, method, path, status)


def test_openapi_document_needs_authentication(app: FastAPI, tokens: dict[Role, str]) -> None:
    client = new_client(app)
    assert client.get("/api/v1/openapi.json").status_code == 401
    r = client.get("/api/v1/openapi.json", headers={"Authorization": f"Bearer {tokens[Role.AUDITOR]}"})
    assert r.status_code == 200
    assert "/api/v1/operators" in r.json()["paths"]
