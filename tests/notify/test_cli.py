"""`fleetguard notify`: add, list, test and remove destinations on an installation made by
`fleetguard init`, against a real HTTPS receiver."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from fleetguard.cli.main import app
from tests.agent.pki import TestCA
from tests.notify.receivers import HttpsReceiver, verify_signature

runner = CliRunner()


def _cli(data_dir: Path, *args: str) -> Result:
    return runner.invoke(app, ["notify", *args, "--data-dir", str(data_dir)],
                         env={"COLUMNS": "100"})


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("installation")
    result = runner.invoke(app, ["init", "--data-dir", str(directory)])
    assert result.exit_code == 0, result.output
    return directory


def test_a_webhook_added_tested_listed_and_removed(
    data_dir: Path, receiver: HttpsReceiver, receiver_ca: TestCA, tmp_path: Path
) -> None:
    ca_file = tmp_path / "ca.pem"
    ca_file.write_bytes(receiver_ca.pem)
    added = _cli(data_dir, "add-webhook", "soc", receiver.url, "--allow-private-network",
                 "--ca-file", str(ca_file), "--min-severity", "high")
    assert added.exit_code == 0, added.output
    ident = added.stdout.split()[1]
    secret = added.stdout.strip().splitlines()[-1]
    assert secret.startswith("whsec_")

    tested = _cli(data_dir, "test", ident)
    assert tested.exit_code == 0, tested.output
    assert tested.stdout.startswith("delivered (200)")
    (request,) = receiver.requests
    assert verify_signature(secret, request.headers, request.body)

    listed = _cli(data_dir, "list", "--json")
    assert listed.exit_code == 0, listed.output
    (row,) = json.loads(listed.stdout)
    assert (row["id"], row["min_severity"], row["deliveries"]["delivered"]) == (ident, "high", 1)
    assert secret not in listed.stdout

    table = _cli(data_dir, "list")
    assert ident in table.stdout and "soc" in table.stdout
    assert _cli(data_dir, "remove", ident).exit_code == 0
    assert json.loads(_cli(data_dir, "list", "--json").stdout) == []


def test_a_failed_test_exits_1_and_says_why(data_dir: Path) -> None:
    added = _cli(data_dir, "add-syslog", "siem-down", "127.0.0.1", "--port", "9",
                 "--transport", "tcp")
    assert added.exit_code == 0, added.output
    tested = _cli(data_dir, "test", added.stdout.strip())
    assert tested.exit_code == 1
    assert "not delivered" in tested.stdout and "connection failed" in tested.stdout


def test_bad_input_exits_2_naming_the_problem(data_dir: Path) -> None:
    refused = _cli(data_dir, "add-webhook", "meta", "https://169.254.169.254/latest")
    assert refused.exit_code == 2
    assert "destination_address_refused" in refused.output
    wrong = _cli(data_dir, "add-syslog", "s", "10.0.0.1", "--transport", "carrier-pigeon")
    assert wrong.exit_code == 2 and "transport must be udp, tcp or tls" in wrong.output
