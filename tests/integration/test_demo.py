"""`fleetguard demo` runs the whole platform, then stops and leaves nothing running."""

from __future__ import annotations

import json
import sqlite3
import subprocess
from pathlib import Path

import psutil
import pytest

from tests.integration.server import FLEETGUARD
from tests.processes import free_port

pytestmark = pytest.mark.process


def test_demo_runs_a_fleet_end_to_end_and_stops_cleanly(tmp_path: Path) -> None:
    data = tmp_path / "demo"
    ports = [str(free_port()) for _ in range(3)]
    result = subprocess.run(
        [*FLEETGUARD, "demo", "--data-dir", str(data), "--devices", "6", "--compromised", "2",
         "--port", ports[0], "--device-port", ports[1], "--mqtt-port", ports[2],
         "--interval", "1", "--duration", "15"],
        capture_output=True, text=True, timeout=180, check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "admin password: " in result.stdout
    assert "nothing left running" in result.stdout
    with sqlite3.connect(data / "fleetguard.db") as conn:
        active = conn.execute("SELECT count(*) FROM devices WHERE state = 'active'").fetchone()[0]
        reported = conn.execute(
            "SELECT count(DISTINCT device_key) FROM telemetry_reports").fetchone()[0]
    assert active == 6 and reported == 6
    truth = json.loads((data / "ground-truth.json").read_text())
    assert len({s["device_id"] for s in truth["scenarios"]}) == 2
    assert {"device_id", "scenario", "start", "end"} <= set(truth["scenarios"][0])
    leftovers = [p.info for p in psutil.process_iter(["pid", "cmdline"])
                 if str(data) in " ".join(p.info["cmdline"] or [])]
    assert leftovers == []
