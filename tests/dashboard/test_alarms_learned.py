"""Alarms of the learned detectors in the dashboard: a device's own baseline flags a CPU
far above its normal with a band and a confidence below a rule's; the queue sorts and
filters by them, and the alarm page shows the band."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

import pytest

from fleetguard.core.clock import now_ms
from fleetguard.detect.alarm_records import list_alarms
from fleetguard.operators import Role
from fleetguard.registry import service as registry
from fleetguard.store import Database
from tests.dashboard.alarms_lab import MINUTE_MS, ReportingDevice, detection_pipeline
from tests.dashboard.conftest import Browser


@dataclass
class Alarms:
    baseline: int  # cpu_percent above the gateway's normal: medium severity and confidence
    scan: int  # the camera's port scan: high severity, high confidence


def _register(db: Database, name: str) -> str:
    with db.session() as session:
        return registry.register_device(session, name=name, actor="test").id


@pytest.fixture
def alarms(sqlite_db: Database) -> Alarms:
    gateway, camera = _register(sqlite_db, "gw-2"), _register(sqlite_db, "cam-7")
    with detection_pipeline(sqlite_db, learned=True) as pipeline:
        pipeline.learn_then_spike(ReportingDevice(gateway, at_ms=now_ms() - 40 * MINUTE_MS))
        pipeline.scan(ReportingDevice(camera))
    with sqlite_db.session() as session:
        found = {a.kind.value: a for a in list_alarms(session).alarms}
    assert set(found) == {"baseline", "threshold"}, found
    assert (found["baseline"].confidence.value, found["baseline"].severity.value) == (
        "medium", "medium")
    return Alarms(found["baseline"].id, found["threshold"].id)


def _rows(html: str) -> list[int]:
    return [int(n) for n in re.findall(r'<tr data-alarm="(\d+)">', html)]


def test_the_queue_sorts_a_learned_alarm_after_a_surer_rule_and_filters_by_kind(
    alarms: Alarms, browser_as: Callable[[Role], Browser]
) -> None:
    client = browser_as(Role.AUDITOR).client
    assert _rows(client.get("/alarms?sort=confidence").text) == [alarms.scan, alarms.baseline]
    assert _rows(client.get("/alarms?confidence=high").text) == [alarms.scan]
    assert _rows(client.get("/alarms?kind=baseline").text) == [alarms.baseline]
    assert _rows(client.get("/alarms?confidence=medium").text) == [alarms.scan,
                                                                    alarms.baseline]


def test_the_page_of_a_learned_alarm_shows_the_band_it_fell_outside_of(
    alarms: Alarms, browser_as: Callable[[Role], Browser]
) -> None:
    html = browser_as(Role.AUDITOR).client.get(f"/alarms/{alarms.baseline}").text
    assert "baseline.cpu_percent" in html and "(baseline)" in html
    assert "medium confidence" in html
    assert '<dd id="alarm-observed">70</dd>' in html
    assert re.search(r"\(normal band 0 to \d+(\.\d+)?\)", html)
    assert "cpu percent" in html and "<polyline" in html  # the series behind it, charted
