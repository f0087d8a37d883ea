"""Before `fleetguard init`, every command that needs the installation says so in one line.

No traceback for a user's mistake: each command run against an empty data dir prints one
line naming what is missing and what to run, and exits 1 (the documented code for an
error that is not bad input; see cli/common.fleet_errors).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from fleetguard.cli.main import app

runner = CliRunner()

NEEDS_INSTALLATION = [
    ["device", "list"],
    ["device", "add", "cam-1"],
    ["operator", "list"],
    ["operator", "disable", "someone"],
    ["token", "list"],
    ["cert", "list"],
    ["cert", "revoke", "01ab"],
    ["ca", "show"],
    ["ca", "rotate"],
    ["device", "token", "00000000-0000-0000-0000-000000000000"],
    ["device", "decommission", "00000000-0000-0000-0000-000000000000"],
    ["claim", "reopen", "SN-1"],
    ["audit-log", "verify"],
    ["audit-log", "head"],
    ["db", "upgrade"],
    ["keys", "rotate-master"],
    ["serve", "--port", "0", "--device-port", "0"],
    ["broker"],
]


@pytest.mark.parametrize("command", NEEDS_INSTALLATION, ids=" ".join)
def test_command_before_init_says_what_to_run_in_one_line(
    tmp_path: Path, command: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("FLEETGUARD_MASTER_KEY", raising=False)
    monkeypatch.delenv("FLEETGUARD_DATABASE_URL", raising=False)
    result = runner.invoke(app, [*command, "--data-dir", str(tmp_path / "nothing-here")])
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert result.exit_code == 1, result.output
    assert len(lines) == 1, result.output
    assert "fleetguard init" in lines[0]
    assert "Traceback" not in result.output
    assert not (tmp_path / "nothing-here" / "fleetguard.db").exists()
