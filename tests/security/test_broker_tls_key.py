"""A compromised broker reads the platform's TLS key: the broker has a key of its own.

Mosquitto parses untrusted TLS and MQTT from every device. Started by root it runs as the
mosquitto account; before, that account could read ``tls/server.key``, the key of the
platform's HTTPS API and device endpoint, so a bug in the broker was the platform's
identity lost. Now the broker presents a certificate of its own (``broker/tls``), and the
platform's key is root's alone, also on an installation an earlier version had opened.
"""

from __future__ import annotations

import grp
import os
import stat
from collections.abc import Iterator

import pytest

from fleetguard.broker import BrokerConfig, BrokerFiles, prepare_broker
from fleetguard.core.config import Settings, load_settings
from fleetguard.identity.ca import open_installation_ca
from fleetguard.install import init_installation
from fleetguard.keys import load_master_key
from fleetguard.pki import FleetCA
from tests.broker.conftest import (
    broker_account,
    reachable_directory,
    readable_by_broker_account,
)

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the account switch is root's to make")


@pytest.fixture(scope="module")
def installation() -> Iterator[tuple[Settings, FleetCA]]:
    broker_account()
    with reachable_directory("fg-tls-key-") as tmp:
        settings = load_settings(tmp / "data")
        init_installation(settings)
        with open_installation_ca(settings, load_master_key(settings)) as ca:
            yield settings, ca


def _prepare(installation: tuple[Settings, FleetCA]) -> BrokerFiles:
    settings, ca = installation
    files = prepare_broker(settings, ca, BrokerConfig(port=18885))
    assert files.run_as == "mosquitto"
    return files


def test_a_compromised_broker_cannot_read_the_platforms_tls_key(
    installation: tuple[Settings, FleetCA],
) -> None:
    settings, _ = installation
    files = _prepare(installation)
    assert readable_by_broker_account(files.tls_key)
    assert not readable_by_broker_account(settings.server_key_file)
    st = settings.server_key_file.stat()
    assert (st.st_uid, stat.S_IMODE(st.st_mode)) == (0, 0o600)
    assert files.tls_key.read_bytes() != settings.server_key_file.read_bytes()


def test_a_key_an_earlier_version_opened_to_the_broker_is_closed_again(
    installation: tuple[Settings, FleetCA],
) -> None:
    settings, _ = installation
    gid = grp.getgrnam("mosquitto").gr_gid
    _prepare(installation)  # the data dir open to the broker, as any release leaves it
    # As the previous release left it: tls/ traversable and server.key readable by group.
    for path, mode in ((settings.tls_dir, 0o710), (settings.server_key_file, 0o640)):
        os.chown(path, -1, gid)
        os.chmod(path, mode)
    assert readable_by_broker_account(settings.server_key_file)
    _prepare(installation)
    assert not readable_by_broker_account(settings.server_key_file)
    assert stat.S_IMODE(settings.server_key_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(settings.tls_dir.stat().st_mode) == 0o700
