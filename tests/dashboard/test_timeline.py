"""The device page's Alarms section and timeline: reports received, alarms opened and
triaged, findings, operators' actions from the audit log; newest first, bounded."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator

import pytest

from fleetguard.detect.alarm_records import list_alarms
from fleetguard.detect.triage import acknowledge_alarm
from fleetguard.operators import Role
from fleetguard.registry import DeviceState
from fleetguard.registry import service as registry
from fleetguard.store import Database
from tests.dashboard.alarms_lab import Pipeline, ReportingDevice, detection_pipeline
from tests.dashboard.conftest import Browser


@pytest.fixture
def pipeline(sqlite_db: Database) -> Iterator[Pipeline]:
    with detection_pipeline(sqlite_db) as running:
        yield running


def _register(db: Database, name: str) -> str:
    with db.session() as session:
        return registry.register_device(session, name=name, actor="test").id


def _timeline(html: str) -> list[str]:
    """The timeline's event titles, in order."""
    section = html.split('id="device-timeline"')[1].split("</ol>")[0]
    return [re.sub(r"<[^>]+>", "", t).strip()
            for t in re.findall(r'<span class="tl-title">(.*?)</span>', section)]


@pytest.fixture
def scanned_camera(sqlite_db: Database, pipeline: Pipeline) -> str:
    """A camera that scanned; an operator acknowledged its alarm, then quarantined it."""
    camera = _register(sqlite_db, "cam-7")
    with sqlite_db.session() as session:
        registry.set_device_state(session, camera, DeviceState.ACTIVE, actor="test")
    pipeline.scan(ReportingDevice(camera))
    with sqlite_db.session() as session:
        [alarm] = list_alarms(session).alarms
        acknowledge_alarm(session, alarm.id, actor="operator:ana")
    with sqlite_db.session() as session:
        registry.set_device_state(session, camera, DeviceState.QUARANTINED,
                                  actor="operator:ana", reason="scanning its neighbours")
    return camera


def test_the_device_page_lists_its_open_alarms_and_their_risk(
    scanned_camera: str, browser_as: Callable[[Role], Browser]
) -> None:
    html = browser_as(Role.AUDITOR).client.get(f"/devices/{scanned_camera}").text
    alarms = html.split('id="alarms"')[1].split("</section>")[0]
    assert "Alarms: 1 open" in alarms and "scan.refused-connections" in alarms
    assert re.search(r'id="device-alarm-risk">30<', alarms)  # one high alarm weighs 30


def test_the_timeline_shows_reports_alarms_and_operator_actions_newest_first(
    scanned_camera: str, browser_as: Callable[[Role], Browser]
) -> None:
    events = _timeline(browser_as(Role.AUDITOR).client.get(f"/devices/{scanned_camera}").text)
    # (the test's reports were collected in the minutes before the device was registered)
    assert events == [
        "device.state.quarantined",
        "Alarm acknowledged: high scanning (scan.refused-connections)",
        "Alarm opened: high scanning (scan.refused-connections)",
        "device.state.active",
        "device.register",
        "2 reports received",
    ]


def test_an_operator_action_in_the_timeline_says_who_and_why(
    scanned_camera: str, browser_as: Callable[[Role], Browser]
) -> None:
    html = browser_as(Role.AUDITOR).client.get(f"/devices/{scanned_camera}").text
    assert "scanning its neighbours · by operator:ana" in html


def test_another_devices_actions_stay_out_of_its_timeline(
    sqlite_db: Database, scanned_camera: str, browser_as: Callable[[Role], Browser]
) -> None:
    other = _register(sqlite_db, "gw-1")
    events = _timeline(browser_as(Role.AUDITOR).client.get(f"/devices/{other}").text)
    assert events == ["device.register"]
    html = browser_as(Role.OPERATOR).client.get(f"/devices/{other}").text
    assert "No open alarm." in html


def test_the_timeline_is_bounded(
    scanned_camera: str, browser_as: Callable[[Role], Browser],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from fleetguard.dashboard import timeline

    monkeypatch.setattr(timeline, "TIMELINE_LIMIT", 2)
    html = browser_as(Role.AUDITOR).client.get(f"/devices/{scanned_camera}").text
    assert _timeline(html) == ["device.state.quarantined",
                               "Alarm acknowledged: high scanning (scan.refused-connections)"]
    assert "at most 2 events" in html
