"""Attack: make the server read one of its own files through a scan target (``@/path``).

The probe sent ``{"targets": ["@/etc/shadow"]}`` and the 422 echoed the file's lines. A
target that reaches the server is an address, a network, a range or a host name; ``@file``
is expanded by the CLI on the operator's machine and refused by the server.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from pathlib import Path

import pytest

from fleetguard.core.config import Settings
from fleetguard.operators import Role
from tests.support import LoggedIn


@pytest.fixture
def secret_file(tmp_path: Path) -> tuple[Path, str]:
    marker = f"SECRET-{secrets.token_hex(8)}"
    path = tmp_path / "server-secret.txt"
    path.write_text(f"{marker}\nsecond-line-{marker}\n")
    return path, marker


def _scan_bodies(path: Path) -> list[tuple[str, dict[str, object]]]:
    return [
        ("/api/v1/scans", {"targets": [f"@{path}"], "ports": "9"}),
        ("/api/v1/scan-schedules",
         {"name": "leak", "targets": [f"@{path}"], "ports": "9", "interval_s": 3600}),
    ]


def test_scan_target_naming_a_server_file_is_refused_without_its_content(
    login_as: Callable[[Role], LoggedIn], secret_file: tuple[Path, str]
) -> None:
    path, marker = secret_file
    op = login_as(Role.OPERATOR)
    for url, body in _scan_bodies(path):
        r = op.client.post(url, json=body, headers=op.headers())
        assert r.status_code == 422, (url, r.text)
        assert r.json()["error"]["field"] == "targets"
        assert marker not in r.text, f"{url} echoed the file's content"


def test_master_key_file_is_not_read_through_a_scan_target(
    login_as: Callable[[Role], LoggedIn], settings: Settings
) -> None:
    key_file = settings.data_dir / "master.key"
    key_file.write_text("not-an-address-but-a-key-line\n")
    op = login_as(Role.OPERATOR)
    r = op.client.post("/api/v1/scans", json={"targets": [f"@{key_file}"], "ports": "9"},
                       headers=op.headers())
    assert r.status_code == 422
    assert "not-an-address-but-a-key-line" not in r.text


def test_error_echoes_only_a_truncated_token(login_as: Callable[[Role], LoggedIn]) -> None:
    op = login_as(Role.OPERATOR)
    long_target = "a!" * 150  # 300 characters, the schema's limit
    r = op.client.post("/api/v1/scans", json={"targets": [long_target], "ports": "9"},
                       headers=op.headers())
    assert r.status_code == 422
    assert long_target not in r.text
    assert len(r.json()["error"]["message"]) < 200
