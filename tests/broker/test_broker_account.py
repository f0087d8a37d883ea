"""Started by root, the broker runs as the mosquitto account and reaches only its own files."""

from __future__ import annotations

import json
import logging
import os
import stat
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from fleetguard.broker import BrokerConfig, prepare_broker
from fleetguard.broker._account import choose_broker_account, grant_broker_access
from fleetguard.broker.errors import BrokerConfigError
from fleetguard.core.config import Settings, load_settings
from fleetguard.identity.ca import open_installation_ca
from fleetguard.install import init_installation
from fleetguard.keys import load_master_key
from fleetguard.pki import FleetCA
from tests.broker.conftest import (
    MOSQUITTO,
    Fleet,
    broker_account,
    readable_by_broker_account,
)

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or not MOSQUITTO.exists(),
    reason="needs root and mosquitto: the account switch is root's to make",
)


def test_the_broker_runs_as_the_mosquitto_account(fleet: Fleet) -> None:
    account = broker_account()
    status = Path(f"/proc/{fleet.process.pid}/status").read_text()
    uids = next(line for line in status.splitlines() if line.startswith("Uid:")).split()[1:]
    assert set(map(int, uids)) == {account.pw_uid}
    assert fleet.files.run_as == "mosquitto"


def test_the_broker_account_reads_what_the_broker_needs(fleet: Fleet) -> None:
    files = fleet.files
    for path in (files.tls_cert, files.tls_key, files.ca_bundle, files.crl_file,
                 files.config_file):
        assert readable_by_broker_account(path), path


def test_the_broker_account_reads_none_of_the_platforms_secrets(fleet: Fleet) -> None:
    data = fleet.tmp / "data"
    secrets = [data / "master.key", data / "fleetguard.db", data / "ca" / "keys",
               data / "tls" / "server.key", fleet.files.service_key, fleet.files.admin_key,
               fleet.files.log_file]
    secrets += list((data / "ca" / "keys").iterdir())
    assert all(p.exists() for p in secrets)
    assert [p for p in secrets if readable_by_broker_account(p)] == []


def test_the_platforms_tls_key_stays_root_only(fleet: Fleet) -> None:
    key = fleet.tmp / "data" / "tls" / "server.key"
    st = key.stat()
    assert (st.st_uid, stat.S_IMODE(st.st_mode)) == (0, 0o600)
    assert stat.S_IMODE(key.parent.stat().st_mode) == 0o700
    assert not readable_by_broker_account(key)


def test_the_plugin_saves_dynsec_changes_as_the_broker_account(fleet: Fleet) -> None:
    fleet.admin.execute([{"command": "createRole", "rolename": "test-saved-role"}])
    try:
        deadline = time.monotonic() + 5
        names: set[str] = set()
        while time.monotonic() < deadline and "test-saved-role" not in names:
            time.sleep(0.05)
            state = json.loads(fleet.files.dynsec_file.read_text())
            names = {r["rolename"] for r in state["roles"]}
        assert "test-saved-role" in names
        assert fleet.files.dynsec_file.stat().st_uid == broker_account().pw_uid
    finally:
        fleet.admin.execute([{"command": "deleteRole", "rolename": "test-saved-role"}])


@pytest.fixture(scope="module")
def unreachable(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Settings, FleetCA]]:
    """An installation under pytest's base temp dir, which is 0700: out of mosquitto's reach."""
    settings = load_settings(tmp_path_factory.mktemp("private") / "data")
    init_installation(settings)
    with open_installation_ca(settings, load_master_key(settings)) as ca:
        yield settings, ca


def test_a_data_dir_out_of_reach_keeps_the_broker_root_and_says_why(
    unreachable: tuple[Settings, FleetCA], caplog: pytest.LogCaptureFixture
) -> None:
    broker_account()
    settings, ca = unreachable
    with caplog.at_level(logging.WARNING, logger="fleetguard.broker"):
        files = prepare_broker(settings, ca, BrokerConfig(port=18884))
    assert files.run_as == "root"
    assert "user root" in files.config_file.read_text().splitlines()
    blocked = next(p for p in reversed(settings.data_dir.parents) if not os.stat(p).st_mode & 0o001)
    assert any(str(blocked) in r.getMessage() and "keeps root" in r.getMessage()
               for r in caplog.records)


def test_an_account_asked_for_by_name_must_reach_the_data_dir(
    unreachable: tuple[Settings, FleetCA]
) -> None:
    broker_account()
    settings, ca = unreachable
    with pytest.raises(BrokerConfigError, match=r"cannot run as 'mosquitto'.*not traversable"):
        prepare_broker(settings, ca, BrokerConfig(port=18884, run_as="mosquitto"))


def test_an_account_that_does_not_exist_is_an_error(unreachable: tuple[Settings, FleetCA]) -> None:
    settings, ca = unreachable
    with pytest.raises(BrokerConfigError, match="no account 'fg-no-such-account'"):
        prepare_broker(settings, ca, BrokerConfig(port=18884, run_as="fg-no-such-account"))


def test_a_link_left_in_the_state_dir_hands_nothing_over(
    reachable_tmp: Path, fleet: Fleet
) -> None:
    victim = reachable_tmp / "root-only"
    victim.write_text("root's")
    os.chmod(victim, 0o600)
    link = fleet.files.state_dir / "planted"
    link.symlink_to(victim)
    try:
        data_dir = fleet.tmp / "data"
        assert grant_broker_access(fleet.files, data_dir, choose_broker_account(None)) is None
        assert victim.stat().st_uid == 0 and victim.stat().st_mode & 0o777 == 0o600
        assert fleet.files.dynsec_file.stat().st_uid == broker_account().pw_uid
    finally:
        link.unlink()
        victim.unlink()


def test_a_dynsec_file_replaced_by_a_link_is_refused_not_followed(
    unreachable: tuple[Settings, FleetCA], tmp_path: Path
) -> None:
    settings, ca = unreachable
    files = prepare_broker(settings, ca, BrokerConfig(port=18884))
    secret = tmp_path / "root-only.json"
    secret.write_text(json.dumps({"clients": [], "roles": [], "secret": "root's"}))
    files.dynsec_file.unlink()
    files.dynsec_file.symlink_to(secret)
    try:
        with pytest.raises(BrokerConfigError, match="is unreadable"):
            prepare_broker(settings, ca, BrokerConfig(port=18884))
    finally:
        files.dynsec_file.unlink()
    prepare_broker(settings, ca, BrokerConfig(port=18884))
    assert "root's" not in files.dynsec_file.read_text()
