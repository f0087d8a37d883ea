"""Attack (or accident): the last admin disables itself and nobody can administer the fleet.

The last enabled admin can be neither disabled through the API nor from the CLI; and an
operator disabled by mistake is enabled again with ``fleetguard operator enable``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from typer.testing import CliRunner

from fleetguard.cli.main import app as cli
from fleetguard.operators import Role
from tests.support import LoggedIn

runner = CliRunner()


def test_last_admin_cannot_disable_itself(login_as: Callable[[Role], LoggedIn]) -> None:
    admin = login_as(Role.ADMIN)
    r = admin.client.post(f"/api/v1/operators/{admin.username}/disable", headers=admin.headers())
    assert r.status_code == 409
    assert r.json()["error"]["code"] == "last_admin"
    assert admin.client.get("/api/v1/me").status_code == 200


def test_an_admin_may_be_disabled_while_another_stays(
    login_as: Callable[[Role], LoggedIn], add_operator: Callable[[str, Role], str]
) -> None:
    admin = login_as(Role.ADMIN)
    add_operator("other-admin", Role.ADMIN)
    r = admin.client.post("/api/v1/operators/other-admin/disable", headers=admin.headers())
    assert r.status_code == 200, r.text
    assert r.json()["disabled"] is True
    r = admin.client.post(f"/api/v1/operators/{admin.username}/disable", headers=admin.headers())
    assert r.status_code == 409


def _cli(*args: str) -> str:
    result = runner.invoke(cli, list(args))
    assert result.exit_code == 0, result.output
    return result.output


def test_cli_refuses_to_disable_the_last_admin_and_enables_again(tmp_path: Path) -> None:
    data = str(tmp_path / "data")
    _cli("init", "--data-dir", data)
    result = runner.invoke(cli, ["operator", "disable", "admin", "--data-dir", data])
    assert result.exit_code != 0
    assert "last enabled admin" in result.output
    password = tmp_path / "pw"
    password.write_text("correct horse battery staple kettle 42\n")
    _cli("operator", "add", "auditor1", "--role", "auditor", "--password-file", str(password),
         "--data-dir", data)
    _cli("operator", "disable", "auditor1", "--data-dir", data)
    assert "disabled" in _cli("operator", "list", "--data-dir", data)
    _cli("operator", "enable", "auditor1", "--data-dir", data)
    listing = _cli("operator", "list", "--data-dir", data)
    assert "auditor1" in listing and "disabled" not in listing
