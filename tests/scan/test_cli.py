"""The command layer: exit codes, formats, and clear errors (never a traceback) on bad input."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import typer
from typer.testing import CliRunner

from fleetguard.cli.scan import scan_command
from fleetguard.scan import Service

from . import lab as L

app = typer.Typer()
app.command("scan")(scan_command)
app.command("version")(lambda: None)  # two commands: `scan` stays a sub-command as in main
runner = CliRunner()


def test_bad_input_exits_2_with_a_reason() -> None:
    for args, needle in (
        (["scan", "300.1.1.1"], "not an address"),
        (["scan", "127.0.0.1", "--ports", "70000"], "out of range"),
        (["scan", "127.0.0.1", "--ports", "http"], "not a port"),
        (["scan", "127.0.0.1", "--timeout", "0"], "timeout"),
        (["scan", "10.0.0.0/8"], "more than"),
    ):
        r = runner.invoke(app, args)
        assert r.exit_code == 2, (args, r.output)
        assert needle in r.output, r.output
        assert "Traceback" not in r.output
    r = runner.invoke(app, ["scan", "127.0.0.1", "--format", "xml"])
    assert r.exit_code == 2
    r = runner.invoke(app, ["scan", "127.0.0.1", "--fail-on", "severe"])
    assert r.exit_code == 2


def test_scan_outputs_and_exit_codes(tmp_path: Path) -> None:
    lb = L.Lab()
    try:
        port = lb.tcp("127.0.0.81", L.telnet_login(L.default_cred(Service.TELNET, 1)))
        base = ["scan", "127.0.0.81", "--ports", str(port), "--timeout", "1", "--login-delay", "0"]
        out = tmp_path / "r.json"
        r = runner.invoke(app, [*base, "--format", "json", "--json", str(out)])
        assert r.exit_code == 0, r.output  # findings alone never fail the command
        doc = json.loads(r.stdout)
        assert json.loads(out.read_text())["findings"] == doc["findings"]
        assert any(f["check"] == "default-credentials" for f in doc["findings"])
        r = runner.invoke(app, [*base, "--format", "csv", "--fail-on", "high"])
        rows = list(csv.DictReader(io.StringIO(r.stdout)))
        assert r.exit_code == 1 and {row["check"] for row in rows} >= {"default-credentials"}
        r = runner.invoke(app, [*base, "--fail-on", "critical"])
        assert r.exit_code == 1 and "1 critical" in r.stdout and "Findings" in r.stdout
        # without logins the worst left is telnet itself (high): below --fail-on critical
        r = runner.invoke(app, [*base, "--no-credentials", "--fail-on", "critical"])
        assert r.exit_code == 0, r.output
        assert "critical" not in r.stdout
    finally:
        lb.close()
