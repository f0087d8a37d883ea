"""`fleetguard scan --server` end to end: a real `fleetguard serve`, a real scan of a
loopback device, the findings on the registered device, then a rescan that resolves them."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.findings.targets import telnet_device
from tests.integration.server import run_cli, start_server
from tests.support import strong_password

pytestmark = pytest.mark.process

ADDRESS = "127.0.0.71"


def test_scan_server_end_to_end(tmp_path: Path) -> None:
    server = start_server(tmp_path)
    try:
        added = server.cli("operator", "add", "scanner", "--role", "operator",
                           stdin=strong_password() + "\n")
        assert added.returncode == 0, added.stderr
        created = server.cli("token", "create", "--operator", "scanner", "--name", "scan")
        assert created.returncode == 0, created.stderr
        token = created.stdout.strip()
        api = server.client()
        api.headers["Authorization"] = f"Bearer {token}"
        device = api.post("/api/v1/devices", json={"name": "lobby-cam"}).json()
        assert api.patch(f"/api/v1/devices/{device['id']}",
                         json={"addresses": [ADDRESS]}).status_code == 200

        bundle = str(server.data_dir / "ca" / "bundle.pem")
        env = {**server.env, "FLEETGUARD_API_TOKEN": token}

        def scan(port: int) -> tuple[int, str]:
            done = run_cli("scan", ADDRESS, "--ports", str(port), "--no-credentials",
                           "--timeout", "1", "--format", "json", "--server", server.base_url,
                           "--ca-file", bundle, "--fail-on", "high", env=env)
            return done.returncode, done.stderr

        with telnet_device(ADDRESS) as port:
            code, err = scan(port)
        assert code == 1, err  # cleartext telnet is high: at --fail-on high
        stored = re.search(r"as scan ([0-9a-f-]{36}): findings opened (\d+), resolved (\d+)", err)
        assert stored, err
        assert (stored.group(2), stored.group(3)) == ("2", "0")
        scan_id = stored.group(1)
        assert api.get(f"/api/v1/scans/{scan_id}").json()["hosts"][0]["device_id"] == device["id"]
        found = api.get(f"/api/v1/devices/{device['id']}/findings").json()["findings"]
        assert {f["check"] for f in found} == {"cleartext-protocol", "service-exposed"}

        # The telnet service is gone: the rescan (same ports) resolves both.
        code, err = scan(port)
        assert code == 0, err
        assert "findings opened 0, resolved 2" in err, err
        assert api.get(f"/api/v1/devices/{device['id']}/findings",
                       params={"state": "open"}).json()["findings"] == []

        # A wrong token: the scan runs, storing it fails with exit code 3.
        bad = run_cli("scan", ADDRESS, "--ports", str(port), "--no-credentials", "--timeout", "0.5",
                      "--server", server.base_url, "--ca-file", bundle,
                      "--api-token", "fgt_nope_nope", env=server.env)
        assert bad.returncode == 3, bad.stderr
        assert "refused the report (401)" in bad.stderr
        no_token = run_cli("scan", ADDRESS, "--server", server.base_url, env=server.env)
        assert no_token.returncode == 2 and "API token" in no_token.stderr
    finally:
        server.stop()
