"""The analyst's path on SQLite and on PostgreSQL: an alarm raised by real reports is in the
queue, its page and the device's timeline render, and acknowledging it from the page works."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from fleetguard.core.config import Settings
from fleetguard.detect.alarm_records import get_alarm, list_alarms
from fleetguard.detect.alarms import AlarmState
from fleetguard.keys import MasterKey
from fleetguard.operators import Role
from fleetguard.operators import service as operators
from fleetguard.pki import FleetCA
from fleetguard.registry import service as registry
from fleetguard.server.operator_app import create_operator_app
from fleetguard.server.scan_jobs import ScanJobs
from fleetguard.store import Database
from tests.api.conftest import new_client
from tests.dashboard.alarms_lab import ReportingDevice, detection_pipeline
from tests.dashboard.conftest import form_login, hidden
from tests.support import strong_password


@pytest.fixture
def analyst(settings: Settings, db: Database, master_key: MasterKey,
            fleet_ca: FleetCA) -> Iterator[TestClient]:
    """An operator's browser session on the app over ``db`` (SQLite, then PostgreSQL)."""
    jobs = ScanJobs(db)
    app = create_operator_app(settings, db=db, master_key=master_key, ca=fleet_ca,
                              scan_jobs=jobs)
    password = strong_password()
    with db.session() as session:
        operators.create_operator(session, username="ana", password=password,
                                  role=Role.OPERATOR, actor="test", issuer=None)
    with new_client(app) as client:
        form_login(client, "ana", password)
        yield client
    jobs.wait_for_scans(30)


def test_the_analysts_path_works_on_either_database(db: Database, analyst: TestClient) -> None:
    with db.session() as session:
        camera = registry.register_device(session, name="cam-7", actor="test").id
    with detection_pipeline(db) as pipeline:
        pipeline.scan(ReportingDevice(camera))
    with db.session() as session:
        [alarm] = list_alarms(session).alarms
    queue = analyst.get("/alarms?sort=last_seen")
    assert queue.status_code == 200
    assert re.findall(r'<tr data-alarm="(\d+)">', queue.text) == [str(alarm.id)]
    assert analyst.get(f"/alarms/{alarm.id}").status_code == 200
    confirm = analyst.get(f"/alarms/{alarm.id}/confirm/acknowledge")
    done = analyst.post(f"/alarms/{alarm.id}/actions/acknowledge",
                        data={"csrf_token": hidden(confirm.text, "csrf_token")},
                        follow_redirects=False)
    assert done.status_code == 303
    with db.session() as session:
        assert get_alarm(session, alarm.id).state is AlarmState.ACKNOWLEDGED
    device = analyst.get(f"/devices/{camera}")
    assert device.status_code == 200
    assert "2 reports received" in device.text and "Alarm acknowledged" in device.text
    overview = analyst.get("/")
    assert re.search(r'id="alarms-high" href="[^"]+"><span class="n">1<', overview.text)
