"""The real thing: `fleetguard init` and `fleetguard serve` as processes, spoken to over TLS."""

from __future__ import annotations

import json
import os
import re
import socket
import sqlite3
import ssl
import threading
import warnings
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import psutil
import pytest

from fleetguard.operators import Role
from tests.api.test_authz_matrix import MATRIX, PUBLIC
from tests.integration.server import RunningServer, start_server
from tests.support import code_for, secret_from_uri, strong_password

pytestmark = pytest.mark.process


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    running = start_server(tmp_path_factory.mktemp("server"))
    yield running
    running.stop()


def _login(client: httpx.Client, username: str, password: str) -> httpx.Response:
    return client.post("/api/v1/auth/login", json={"username": username, "password": password})


def _enroll_admin(server: RunningServer) -> tuple[httpx.Client, str]:
    client = server.client()
    challenge = _login(client, "admin", server.admin_password).json()["challenge"]
    uri = client.post("/api/v1/auth/mfa/enroll", json={"challenge": challenge}).json()["otpauth_uri"]
    secret = secret_from_uri(uri)
    r = client.post("/api/v1/auth/mfa/enroll/confirm", json={"challenge": challenge, "code": code_for(secret)})
    assert r.status_code == 200, r.text
    return client, secret


@pytest.fixture(scope="module")
def admin(server: RunningServer) -> tuple[httpx.Client, str]:
    return _enroll_admin(server)


def test_healthz_answers_over_tls_without_login(server: RunningServer) -> None:
    assert server.client().get("/healthz").json() == {"status": "ok"}


def test_plain_http_gets_no_answer(server: RunningServer) -> None:
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"http://127.0.0.1:{server.port}/healthz", timeout=5)


def _tls11_client() -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_1
        ctx.maximum_version = ssl.TLSVersion.TLSv1_1
    ctx.set_ciphers("ALL:@SECLEVEL=0")
    return ctx


def _control_server_accepts_tls11(server: RunningServer) -> bool:
    """Can this machine's OpenSSL speak TLS 1.1 at all? Try against a permissive local peer."""
    srv = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        srv.minimum_version = ssl.TLSVersion.TLSv1_1
    srv.set_ciphers("ALL:@SECLEVEL=0")
    srv.load_cert_chain(server.data_dir / "tls" / "server.crt", server.data_dir / "tls" / "server.key")
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def accept() -> None:
        conn, _ = listener.accept()
        try:
            srv.wrap_socket(conn, server_side=True).close()
        except (ssl.SSLError, OSError):
            conn.close()

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
            _tls11_client().wrap_socket(raw, server_hostname="localhost").close()
        return True
    except (ssl.SSLError, OSError):
        return False
    finally:
        thread.join(timeout=5)
        listener.close()


def test_tls_1_1_is_refused(server: RunningServer) -> None:
    if not _control_server_accepts_tls11(server):
        pytest.skip("this machine's OpenSSL cannot speak TLS 1.1 even to a permissive peer")
    with (
        socket.create_connection(("127.0.0.1", server.port), timeout=5) as raw,
        pytest.raises(ssl.SSLError),
    ):
        _tls11_client().wrap_socket(raw, server_hostname="localhost").close()


def test_tls_1_2_and_1_3_are_accepted(server: RunningServer) -> None:
    for version in (ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3):
        ctx = server.tls_context()
        ctx.minimum_version = ctx.maximum_version = version
        with (
            socket.create_connection(("127.0.0.1", server.port), timeout=5) as raw,
            ctx.wrap_socket(raw, server_hostname="localhost") as tls,
        ):
            assert tls.version() == {ssl.TLSVersion.TLSv1_2: "TLSv1.2", ssl.TLSVersion.TLSv1_3: "TLSv1.3"}[version]


def test_openapi_document_needs_login(server: RunningServer) -> None:
    assert server.client().get("/api/v1/openapi.json").status_code == 401


def test_admin_password_alone_is_refused_until_mfa_is_passed(server: RunningServer) -> None:
    client = server.client()
    r = _login(client, "admin", server.admin_password)
    assert r.json()["step"] in ("mfa_enrollment_required", "mfa_required")
    assert "__Host-fg_session" not in client.cookies
    assert client.get("/api/v1/me").status_code == 401


def test_admin_gets_a_session_after_mfa(admin: tuple[httpx.Client, str]) -> None:
    client, _ = admin
    me = client.get("/api/v1/me").json()
    assert me["username"] == "admin" and me["mfa_enabled"] is True


def test_replayed_totp_code_fails(server: RunningServer, admin: tuple[httpx.Client, str]) -> None:
    _, secret = admin
    code = code_for(secret, 1)
    first = server.client()
    challenge = _login(first, "admin", server.admin_password).json()["challenge"]
    assert first.post("/api/v1/auth/mfa", json={"challenge": challenge, "code": code}).status_code == 200
    second = server.client()
    challenge = _login(second, "admin", server.admin_password).json()["challenge"]
    r = second.post("/api/v1/auth/mfa", json={"challenge": challenge, "code": code})
    assert r.status_code == 401
    assert second.get("/api/v1/me").status_code == 401


def test_lockout_after_repeated_failures(server: RunningServer) -> None:
    password = strong_password()
    assert server.cli("operator", "add", "locky", "--role", "auditor", stdin=password + "\n").returncode == 0
    client = server.client()
    for _ in range(5):
        assert _login(client, "locky", "wrong-password-123").status_code == 401
    r = _login(client, "locky", password)
    assert r.status_code == 429
    assert int(r.headers["retry-after"]) >= 1


def test_route_role_matrix_holds_on_the_real_server(server: RunningServer) -> None:
    tokens = {}
    for role in Role:
        name = f"m-{role.value}"
        added = server.cli("operator", "add", name, "--role", role.value, stdin=strong_password() + "\n")
        assert added.returncode == 0, added.stderr
        created = server.cli("token", "create", "--operator", name, "--name", "matrix")
        assert created.returncode == 0, created.stderr
        tokens[role] = created.stdout.strip()
    client = server.client()
    for (method, path), rule in MATRIX.items():
        url = re.sub(r"\{[^}]+\}", "no-such-thing", path)
        body = {} if method in ("POST", "PATCH", "PUT") else None
        anonymous = client.request(method, url, json=body).status_code
        if rule == PUBLIC:
            assert anonymous != 401, (method, path)
            continue
        assert anonymous == 401, (method, path, anonymous)
        for role, token in tokens.items():
            status = client.request(
                method, url, json=body, headers={"Authorization": f"Bearer {token}"}
            ).status_code
            expected_ok = role in rule
            assert (status not in (401, 403)) if expected_ok else status == 403, (role, method, path, status)


def test_audit_log_tampering_is_detected(server: RunningServer, admin: tuple[httpx.Client, str]) -> None:
    client, _ = admin
    assert server.cli("audit-log", "verify").returncode == 0
    assert client.get("/api/v1/audit-log/verify").json()["ok"] is True
    with sqlite3.connect(server.data_dir / "fleetguard.db") as conn:
        conn.execute("UPDATE audit_log SET actor = 'operator:nobody' WHERE seq = 2")
    result = server.cli("audit-log", "verify")
    assert result.returncode == 1
    assert "first bad entry 2" in result.stderr + result.stdout
    api = client.get("/api/v1/audit-log/verify").json()
    assert api["ok"] is False and api["first_bad_seq"] == 2
    with sqlite3.connect(server.data_dir / "fleetguard.db") as conn:
        conn.execute("UPDATE audit_log SET actor = 'system' WHERE seq = 2")  # restore
    assert server.cli("audit-log", "verify").returncode == 0


def test_logs_are_json_and_hold_no_secrets(server: RunningServer, admin: tuple[httpx.Client, str]) -> None:
    client, _ = admin
    r = client.post("/api/v1/tokens", json={"name": "logcheck"},
                    headers={"X-CSRF-Token": client.cookies["__Host-fg_csrf"]})
    assert r.status_code == 201
    token = r.json()["token"]
    log = server.log_text()
    assert '"route": "/api/v1/tokens"' in log
    assert server.admin_password not in log
    assert token not in log and token.split("_", 2)[2] not in log
    assert client.cookies["__Host-fg_session"] not in log


def test_postgres_installation_serves_logins(tmp_path: Path, postgres_url: str) -> None:
    running = start_server(tmp_path, database_url=postgres_url)
    try:
        client, _ = _enroll_admin(running)
        assert client.get("/api/v1/me").json()["username"] == "admin"
    finally:
        running.stop()


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0, reason="needs root")
def test_serve_started_as_root_says_how_to_run_it_unprivileged(server: RunningServer) -> None:
    log = server.log_text()
    assert "fleetguard serve is running as root" in log
    assert "packaging/fleetguard.service" in log
    assert f"--data-dir {server.data_dir}" in log


def test_serve_exports_the_audit_logs_signed_head_at_start(server: RunningServer) -> None:
    head = json.loads((server.data_dir / "audit-head.json").read_text())
    exported = datetime.fromisoformat(head["exported_at"].replace("Z", "+00:00"))
    started = datetime.fromtimestamp(psutil.Process(server.process.pid).create_time(), UTC)
    assert exported >= started  # by the server, not the one `init` wrote
    verified = server.cli("audit-log", "verify")
    assert verified.returncode == 0, verified.stdout + verified.stderr
