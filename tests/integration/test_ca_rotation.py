"""A CA rotated by `fleetguard ca rotate` (another process) is picked up by the running
`fleetguard serve`: new devices get certificates from the new issuing CA, and the device
endpoint's TLS trusts them; devices of the old issuing CA keep connecting."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509

from fleetguard.server.ca_reload import CA_RELOAD_EVERY_S
from tests.integration.server import RunningServer, start_server
from tests.integration.test_device_identity import _ok, _register_and_enroll, _whoami

pytestmark = pytest.mark.process


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    running = start_server(tmp_path_factory.mktemp("rotation"))
    yield running
    running.stop()


def _issuer(state: Path) -> x509.Name:
    return x509.load_pem_x509_certificates((state / "device.crt").read_bytes())[0].issuer


def test_the_running_server_issues_from_and_trusts_a_ca_rotated_by_another_process(
    server: RunningServer, tmp_path: Path
) -> None:
    _, old_device = _register_and_enroll(server, tmp_path, "before")
    _ok(server.cli("ca", "rotate"))
    deadline = time.monotonic() + CA_RELOAD_EVERY_S + 10
    attempt = 0
    while True:
        attempt += 1
        _, new_device = _register_and_enroll(server, tmp_path, f"after-{attempt}")
        if _issuer(new_device) != _issuer(old_device) or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert _issuer(new_device) != _issuer(old_device)
    assert _whoami(server, new_device).status_code == 200
    assert _whoami(server, old_device).status_code == 200
