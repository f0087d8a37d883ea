"""`fleetguard eval detect`: the evaluation printed for people, or as JSON, and its exit code."""

from __future__ import annotations

import json
import re

from typer.testing import CliRunner

from fleetguard.cli.main import app

runner = CliRunner()
QUICK = ["eval", "detect", "--seeds", "1", "--devices", "1", "--hours", "2"]


def test_json_gives_every_scenario_benign_variation_and_target() -> None:
    result = runner.invoke(app, [*QUICK, "--json"])
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert {s["scenario"] for s in document["scenarios"]} >= {"port_scan", "c2_beacon", "flood"}
    assert {b["variation"] for b in document["benign"]} >= {"diurnal", "moved_network"}
    assert [d["name"] for d in document["detectors"]][-1] == "static thresholds"
    assert {t["name"] for t in document["targets"]} == {
        "every scenario detected in every trial", "median time to detect",
        "false alarms per device-day"}


def test_the_table_shows_each_attack_beside_the_baseline_and_a_verdict_per_target() -> None:
    result = runner.invoke(app, QUICK, env={"COLUMNS": "120"})
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    header = next(line for line in lines if line.startswith("attack "))
    assert re.split(r"\s{2,}", header.strip()) == [
        "attack", "trials", "fleetguard (rules)", "fleetguard (rules + learned)",
        "static thresholds"]
    flood = next(line for line in lines if line.startswith("flood"))
    # 6 trials (3 profiles x 1 seed x 2 start times), each caught on its first report.
    assert flood.split()[1:] == ["6", *["100%", "|", "1", "|", "1"] * 3]
    verdicts = [line for line in lines if line[:4] in ("PASS", "FAIL")]
    assert len(verdicts) == 6  # three targets for each of the two fleetguard columns


def test_fail_on_miss_exits_1_exactly_when_a_target_is_missed() -> None:
    result = runner.invoke(app, [*QUICK, "--json", "--fail-on-miss"])
    judged = json.loads(result.stdout)
    missed = [t for t in judged["targets"] if not t["passed"]]
    assert judged["passed"] == (not missed)
    assert result.exit_code == (1 if missed else 0)
