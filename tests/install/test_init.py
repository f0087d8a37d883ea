"""`fleetguard init` creates a hardened installation once, and only once."""

from __future__ import annotations

import base64
import os
import stat
from pathlib import Path

import pytest
from typer.testing import CliRunner

from fleetguard.cli.main import app
from fleetguard.core.config import load_settings
from fleetguard.install import init_installation, open_installation_database, rotate_master_key
from fleetguard.install.service import AlreadyInitializedError
from fleetguard.keys import load_master_key, open_secret
from fleetguard.operators.errors import WeakPasswordError
from fleetguard.store.tables import OperatorRow, SecretRow

runner = CliRunner()


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _files(root: Path) -> dict[str, bytes]:
    return {str(p): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_init_prints_a_random_admin_password_once(tmp_path: Path) -> None:
    result = runner.invoke(app, ["init", "--data-dir", str(tmp_path / "d")])
    assert result.exit_code == 0, result.output
    lines = [line for line in result.output.splitlines() if line.startswith("admin password: ")]
    assert len(lines) == 1
    assert len(lines[0].removeprefix("admin password: ")) >= 20


def test_two_installations_get_different_admin_passwords(tmp_path: Path) -> None:
    a = init_installation(load_settings(tmp_path / "a"))
    b = init_installation(load_settings(tmp_path / "b"))
    assert a.admin_password and b.admin_password and a.admin_password != b.admin_password


def test_init_protects_the_data_dir_and_keys(tmp_path: Path) -> None:
    settings = load_settings(tmp_path / "d")
    init_installation(settings)
    assert _mode(settings.data_dir) == 0o700
    assert _mode(settings.master_key_file) == 0o600
    assert _mode(settings.server_key_file) == 0o600


def test_second_init_refuses_and_changes_nothing(tmp_path: Path) -> None:
    data = tmp_path / "d"
    assert runner.invoke(app, ["init", "--data-dir", str(data)]).exit_code == 0
    before = _files(data)
    result = runner.invoke(app, ["init", "--data-dir", str(data)])
    assert result.exit_code != 0
    assert "already initialized" in result.output
    assert _files(data) == before


def test_admin_password_can_come_from_a_file(tmp_path: Path) -> None:
    secret = tmp_path / "pw"
    secret.write_text("vault-Ember-Quiver-93\n")
    result = runner.invoke(
        app, ["init", "--data-dir", str(tmp_path / "d"), "--admin-password-file", str(secret)]
    )
    assert result.exit_code == 0
    assert "admin password:" not in result.output


def test_weak_admin_password_file_is_refused_before_anything_is_created(tmp_path: Path) -> None:
    with pytest.raises(WeakPasswordError):
        init_installation(load_settings(tmp_path / "d"), admin_password="password1234")
    assert not (tmp_path / "d").exists()


def test_master_key_can_come_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLEETGUARD_MASTER_KEY", base64.b64encode(os.urandom(32)).decode())
    settings = load_settings(tmp_path / "d")
    init_installation(settings)
    assert not settings.master_key_file.exists()


def test_init_on_postgres_refuses_a_database_that_has_operators(
    tmp_path: Path, postgres_url: str
) -> None:
    init_installation(load_settings(tmp_path / "a", postgres_url))
    with pytest.raises(AlreadyInitializedError):
        init_installation(load_settings(tmp_path / "b", postgres_url))
    assert not (tmp_path / "b").exists()


def test_rotate_master_reencrypts_every_secret(tmp_path: Path) -> None:
    from fleetguard.core.clock import utcnow
    from fleetguard.keys import MasterKey, seal_secret

    settings = load_settings(tmp_path / "d")
    init_installation(settings)
    old = load_master_key(settings)
    db = open_installation_database(settings)
    with db.session() as session:
        session.add(SecretRow(purpose="t", context="ctx", sealed=seal_secret(old, b"s3", b"ctx"),
                              created_at=utcnow()))
    new, count = rotate_master_key(settings, db)
    assert count == 3  # the TOTP-like secret, the root CA key and the issuing CA key
    assert load_master_key(settings).key_id == new.key_id != old.key_id
    with db.session() as session:
        row = session.query(SecretRow).filter_by(purpose="t").one()
        assert open_secret(new, row.sealed, b"ctx") == b"s3"
        assert session.query(OperatorRow).count() == 1
    assert isinstance(new, MasterKey)
    db.dispose()


def test_fleet_ca_still_signs_after_master_rotation(tmp_path: Path) -> None:
    from cryptography import x509
    from cryptography.hazmat.primitives.asymmetric import ec

    from fleetguard.identity.ca import open_installation_ca

    settings = load_settings(tmp_path / "d")
    init_installation(settings)
    db = open_installation_database(settings)
    new, _ = rotate_master_key(settings, db)
    db.dispose()
    key = ec.generate_private_key(ec.SECP256R1())
    with open_installation_ca(settings, new) as ca:
        issued = ca.issue_server_certificate(key.public_key(), dns_names=["x.test"])
    assert isinstance(issued.certificate, x509.Certificate)
