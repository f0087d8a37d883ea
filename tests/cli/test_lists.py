"""What the list commands print: tables that fit 80 columns, and JSON for machines (also
`audit-log head --json`, through the same helper).

One installation (made by `fleetguard init`) holds operators, API tokens, devices and
certificates with long free-text names, as a fleet would after a while.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import pytest
from typer.testing import CliRunner

from fleetguard.cli.admin import db_session
from fleetguard.cli.fleet import fleet_ca
from fleetguard.cli.main import app
from tests.support import csr_pem, strong_password

runner = CliRunner()

LONG_NAME = "camera in the north-east stairwell of building seven, second floor landing"
TOKEN_NAME = "nightly inventory export for the compliance dashboard of the facilities team"


def _cli(data_dir: Path, *args: str, columns: int = 80) -> str:
    result = runner.invoke(app, [*args, "--data-dir", str(data_dir)],
                           env={"COLUMNS": str(columns)})
    assert result.exit_code == 0, result.output
    return result.stdout


@dataclass(frozen=True)
class Fleet:
    data_dir: Path
    device_ids: list[str]  # oldest first; the first one enrolled
    serial: str  # of the first device's certificate


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Fleet:
    from fleetguard.identity import service as identity

    data_dir = tmp_path_factory.mktemp("fleet")
    _cli(data_dir, "init")
    password = data_dir / "pw"
    password.write_text(strong_password())
    _cli(data_dir, "operator", "add", "night-shift-auditor", "--role", "auditor",
         "--password-file", str(password))
    _cli(data_dir, "token", "create", "--operator", "admin", "--name", TOKEN_NAME)
    device_ids = [_cli(data_dir, "device", "add", f"{LONG_NAME} #{i}").strip() for i in range(3)]
    token = _cli(data_dir, "device", "token", device_ids[0]).strip()
    with fleet_ca(data_dir) as ca, db_session(data_dir) as session:
        serial = identity.enroll_with_token(session, ca, token=token, csr=csr_pem(),
                                            source="203.0.113.77").serial_hex
    return Fleet(data_dir, device_ids, serial)


LISTS = [
    ["device", "list"],
    ["operator", "list"],
    ["token", "list"],
    ["cert", "list"],
]


@pytest.mark.parametrize("command", LISTS, ids=" ".join)
def test_table_fits_80_columns(fleet: Fleet, command: list[str]) -> None:
    lines = _cli(fleet.data_dir, *command).splitlines()
    assert len(lines) >= 3
    assert max(len(line) for line in lines) <= 80


def test_device_table_keeps_ids_whole_and_cuts_the_name(fleet: Fleet) -> None:
    out = _cli(fleet.data_dir, "device", "list")
    rows = {line.split()[0]: line for line in out.splitlines()[2:]}
    assert list(rows) == fleet.device_ids
    assert all(row.rstrip().endswith("…") and "camera in the" in row for row in rows.values())
    assert rows[fleet.device_ids[0]].split()[1] == "active"
    assert rows[fleet.device_ids[1]].split()[1] == "registered"


def test_device_table_shows_whole_names_when_the_terminal_is_wide(
    fleet: Fleet,
) -> None:
    out = _cli(fleet.data_dir, "device", "list", columns=200)
    assert f"{LONG_NAME} #2" in out and "…" not in out


def test_token_table_keeps_the_id_and_expiry_and_cuts_the_name(fleet: Fleet) -> None:
    out = _cli(fleet.data_dir, "token", "list")
    listed = json.loads(_cli(fleet.data_dir, "token", "list", "--json"))
    row = next(line for line in out.splitlines() if listed[0]["token_id"] in line)
    assert listed[0]["expires_at"][:10] in row
    assert "nightly inv" in row and TOKEN_NAME not in row and row.rstrip().endswith("…")


def test_certificate_table_keeps_the_serial_whole(fleet: Fleet) -> None:
    out = _cli(fleet.data_dir, "cert", "list")
    row = next(line for line in out.splitlines() if fleet.serial in line)
    assert "valid" in row and fleet.device_ids[0][:8] in row


def test_one_devices_certificate_table_says_where_each_was_last_used(
    fleet: Fleet,
) -> None:
    device_id = fleet.device_ids[0]
    out = _cli(fleet.data_dir, "cert", "list", "--device", device_id)
    header = out.splitlines()[0].split()
    assert header == ["serial", "state", "not", "after", "last", "seen", "from"]


@pytest.mark.parametrize("command", LISTS, ids=" ".join)
def test_json_is_one_plain_document(fleet: Fleet, command: list[str]) -> None:
    out = _cli(fleet.data_dir, *command, "--json")
    document = json.loads(out)
    assert isinstance(document, list) and document
    assert "\x1b[" not in out  # no terminal colours or markup


def test_device_json_holds_every_device_whole(fleet: Fleet) -> None:
    devices = json.loads(_cli(fleet.data_dir, "device", "list", "--json"))
    assert [d["id"] for d in devices] == fleet.device_ids
    assert devices[2]["name"] == f"{LONG_NAME} #2"
    assert {d["state"] for d in devices} == {"active", "registered"}
    assert datetime.fromisoformat(devices[0]["created_at"]).tzinfo is not None


def test_device_json_is_what_device_show_prints(fleet: Fleet) -> None:
    listed = json.loads(_cli(fleet.data_dir, "device", "list", "--json"))
    shown = json.loads(_cli(fleet.data_dir, "device", "show", listed[1]["id"]))
    assert shown == listed[1]


def test_operator_json_names_role_mfa_and_state(fleet: Fleet) -> None:
    operators = json.loads(_cli(fleet.data_dir, "operator", "list", "--json"))
    by_name = {o["username"]: o for o in operators}
    assert by_name["night-shift-auditor"]["role"] == "auditor"
    assert by_name["night-shift-auditor"]["disabled"] is False
    assert by_name["admin"]["mfa_enabled"] is False


def test_token_json_names_the_token_but_holds_no_secret(fleet: Fleet) -> None:
    (token,) = json.loads(_cli(fleet.data_dir, "token", "list", "--json"))
    assert token["name"] == TOKEN_NAME and token["operator"] == "admin"
    assert datetime.fromisoformat(token["expires_at"]) > datetime.fromisoformat(token["created_at"])
    assert not any(str(value).startswith("fgt_") for value in token.values())


def test_certificate_json_names_serial_device_and_last_use(fleet: Fleet) -> None:
    (cert,) = json.loads(_cli(fleet.data_dir, "cert", "list", "--json"))
    assert cert["serial_hex"] == fleet.serial
    assert cert["device_id"] == fleet.device_ids[0]
    assert cert["enrolled_via"] == "token" and cert["revoked_at"] is None


def test_audit_head_json_is_the_head_verify_checks(fleet: Fleet) -> None:
    head = json.loads(_cli(fleet.data_dir, "audit-log", "head", "--json"))
    plain = _cli(fleet.data_dir, "audit-log", "head").strip()
    assert plain == f"{head['seq']}:{head['entry_hash']}"
    assert "audit log intact" in _cli(fleet.data_dir, "audit-log", "verify", "--expect-head", plain)
