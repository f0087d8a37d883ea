"""Given the database, the broker starts with every entitled device's access already in place."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from fleetguard.broker import (
    BrokerConfig,
    broker_process,
    device_acls,
    prepare_broker,
    run_broker_sync,
)
from fleetguard.broker._acl import device_role
from fleetguard.core.config import load_settings
from fleetguard.identity import service as identity
from fleetguard.identity.ca import open_installation_ca
from fleetguard.install import init_installation, open_installation_database
from fleetguard.keys import load_master_key
from fleetguard.registry import service as registry
from tests.broker.conftest import MOSQUITTO
from tests.processes import free_port
from tests.support import csr_pem

pytestmark = pytest.mark.process

STALE = "0b7e8d2c-3f4a-4b5c-8d6e-7f8091a2b3c4"


def _enroll(db, ca, name: str) -> str:  # type: ignore[no-untyped-def]
    csr = csr_pem(name).encode()
    with db.session() as session:
        device = registry.register_device(session, name=name, actor="test")
        token, _ = identity.create_enrollment_token(session, ca, device_id=device.id, actor="test", issuer=None)
        identity.enroll_with_token(session, ca, token=token, csr=csr, source="127.0.0.1")
    return str(device.id)


def test_entitled_devices_are_written_into_the_dynsec_file_and_loaded_at_start(
    tmp_path: Path,
) -> None:
    if not MOSQUITTO.exists() or shutil.which("openssl") is None:
        pytest.skip("mosquitto 2 is not installed at /usr/sbin/mosquitto")
    settings = load_settings(tmp_path / "data")
    init_installation(settings)
    db = open_installation_database(settings, migrate=False)
    ca = open_installation_ca(settings, load_master_key(settings))
    try:
        devices = {_enroll(db, ca, f"seeded-{i}") for i in range(3)}
        config = BrokerConfig(port=free_port(), persistence=False, mosquitto=MOSQUITTO)
        files = prepare_broker(settings, ca, config)
        state = json.loads(files.dynsec_file.read_text())
        state["clients"] += [{"username": STALE, "roles": []},
                             {"username": "operator-made", "roles": []}]
        files.dynsec_file.write_text(json.dumps(state))

        files = prepare_broker(settings, ca, config, db=db)
        state = json.loads(files.dynsec_file.read_text())
        clients = {c["username"]: c for c in state["clients"]}
        roles = {r["rolename"]: r for r in state["roles"]}
        assert devices <= clients.keys() and STALE not in clients
        assert {"operator-made", files.service_name, files.admin_name} <= clients.keys()
        for device in devices:
            assert clients[device]["roles"] == [{"rolename": device_role(device), "priority": 0}]
            assert roles[device_role(device)]["acls"] == device_acls(device)

        process = broker_process(files, config)
        process.start()
        try:
            sync = run_broker_sync(db, files, process=process, ca=ca)
            try:  # the broker loaded them: its first pass has nobody to grant
                report = sync.sync.last_report
                assert report is not None
                assert report.entitled == 3 and report.granted == () and report.removed == ()
            finally:
                sync.stop()
        finally:
            assert process.stop() == 0
    finally:
        ca.close()
        db.dispose()
