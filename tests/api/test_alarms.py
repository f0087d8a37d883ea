"""/api/v1/alarms: the queue, one alarm, a device's alarms, and triage, over alarms the real
detection service raised from reports."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from fleetguard.auditlog import list_audit_entries
from fleetguard.detect.service import DetectionConfig, DetectionService
from fleetguard.operators import Role
from fleetguard.registry import service as registry
from fleetguard.store import Database
from tests.detect.support import MINUTE_MS, T0, listening, net, report
from tests.support import LoggedIn

UNKNOWN_DEVICE = "00000000-0000-4000-8000-000000000000"


def raise_alarms(db: Database, *, scanning: int = 1, listener: int = 0) -> list[str]:
    """Devices that each report twice; ``scanning`` of them port-scan on the second report,
    ``listener`` of them open a new listener (a medium, and a high, alarm each)."""
    service = DetectionService(db, config=DetectionConfig(learning_window_s=0))
    service.start()
    ids = []
    try:
        for i in range(scanning + listener):
            with db.session() as session:
                device_id = registry.register_device(session, name=f"cam-{i}", actor="test").id
            ids.append(device_id)
            scan = i < scanning
            first = report(T0, counters=net(tcp_attempt_fails=0), listeners=[listening(22)])
            second = report(T0 + MINUTE_MS, counters=net(tcp_attempt_fails=9300 if scan else 0),
                            listeners=[listening(22)] + ([] if scan else [listening(4444)]))
            service.observe(device_id, first)
            service.observe(device_id, second)
        assert service.flush(30)
    finally:
        service.stop()
    return ids


@pytest.fixture
def operator(login_as: Callable[[Role], LoggedIn]) -> LoggedIn:
    return login_as(Role.OPERATOR)


@pytest.fixture
def auditor(login_as: Callable[[Role], LoggedIn]) -> LoggedIn:
    return login_as(Role.AUDITOR)


def _alarms(who: LoggedIn, **params: Any) -> dict[str, Any]:
    r = who.client.get("/api/v1/alarms", params=params)
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


def test_a_port_scan_alarm_says_what_was_seen_against_what_was_expected(
    sqlite_db: Database, auditor: LoggedIn
) -> None:
    [device] = raise_alarms(sqlite_db)
    [alarm] = _alarms(auditor)["alarms"]
    assert (alarm["device_id"], alarm["rule_id"], alarm["family"], alarm["severity"],
            alarm["confidence"], alarm["state"]) == (
        device, "scan.refused-connections", "scanning", "high", "high", "active")
    assert alarm["observed"] == pytest.approx(155)
    assert alarm["expected"]["comparison"] == ">" and alarm["expected"]["threshold"] == 2
    assert alarm["reports"]["first_seq"] == (T0 + MINUTE_MS) // 1000
    assert alarm["reports"]["telemetry"] == f"/api/v1/devices/{device}/telemetry"


def test_the_queue_filters_by_severity_and_pages_with_a_cursor(
    sqlite_db: Database, auditor: LoggedIn
) -> None:
    raise_alarms(sqlite_db, scanning=2, listener=1)
    assert len(_alarms(auditor, severity="high")["alarms"]) == 3  # the new listener is high too
    assert _alarms(auditor, family="backdoor_listener")["alarms"][0]["rule_id"] == \
        "backdoor.new-listener"
    first = _alarms(auditor, limit=2)
    rest = _alarms(auditor, limit=2, cursor=first["next_cursor"])
    seen = [a["id"] for a in first["alarms"] + rest["alarms"]]
    assert len(seen) == len(set(seen)) == 3 and rest["next_cursor"] is None


def test_a_cursor_the_list_did_not_give_out_is_a_422(auditor: LoggedIn) -> None:
    r = auditor.client.get("/api/v1/alarms", params={"cursor": "bm90LWEtY3Vyc29y"})
    assert r.status_code == 422 and r.json()["error"]["field"] == "cursor"


def test_an_alarm_is_acknowledged_once_and_the_change_is_audited(
    sqlite_db: Database, operator: LoggedIn
) -> None:
    raise_alarms(sqlite_db)
    [alarm] = _alarms(operator)["alarms"]
    url = f"/api/v1/alarms/{alarm['id']}/acknowledge"
    r = operator.client.post(url, headers=operator.headers())
    assert r.status_code == 200 and r.json()["state"] == "acknowledged"
    assert r.json()["acknowledged_by"] == f"operator:{operator.username}"
    again = operator.client.post(url, headers=operator.headers())
    assert again.status_code == 409 and again.json()["error"]["code"] == "alarm_state_conflict"
    with sqlite_db.session() as session:
        [entry] = list_audit_entries(session, action="alarm.acknowledge")
    assert entry.actor == f"operator:{operator.username}"


def test_a_resolved_alarm_cannot_be_resolved_again(
    sqlite_db: Database, operator: LoggedIn
) -> None:
    raise_alarms(sqlite_db)
    [alarm] = _alarms(operator)["alarms"]
    url = f"/api/v1/alarms/{alarm['id']}/resolve"
    assert operator.client.post(url, json={"note": "isolated"},
                                headers=operator.headers()).json()["state"] == "resolved"
    assert operator.client.post(url, headers=operator.headers()).status_code == 409


def test_a_false_positive_on_a_new_listener_allows_it_on_the_device_until_lifted(
    sqlite_db: Database, operator: LoggedIn
) -> None:
    [device] = raise_alarms(sqlite_db, scanning=0, listener=1)
    [alarm] = _alarms(operator)["alarms"]
    r = operator.client.post(f"/api/v1/alarms/{alarm['id']}/verdict", headers=operator.headers(),
                             json={"verdict": "false_positive", "note": "the vendor's debug port"})
    assert r.status_code == 200, r.text
    assert r.json()["alarm"]["state"] == "resolved"
    [allowed] = r.json()["feedback"]
    assert (allowed["subject"], allowed["device_id"]) == ("listener:tcp/4444", device)
    listed = operator.client.get("/api/v1/detection/feedback", params={"device": device}).json()
    assert [f["id"] for f in listed] == [allowed["id"]]
    lifted = operator.client.delete(f"/api/v1/detection/feedback/{allowed['id']}",
                                    headers=operator.headers())
    assert lifted.status_code == 200 and lifted.json()["lifted_by"] == alarm_actor(operator)
    assert operator.client.get("/api/v1/detection/feedback").json() == []


def alarm_actor(who: LoggedIn) -> str:
    return f"operator:{who.username}"


def test_a_verdict_must_be_true_or_false_positive(
    sqlite_db: Database, operator: LoggedIn
) -> None:
    raise_alarms(sqlite_db)
    [alarm] = _alarms(operator)["alarms"]
    r = operator.client.post(f"/api/v1/alarms/{alarm['id']}/verdict",
                             json={"verdict": "maybe"}, headers=operator.headers())
    assert r.status_code == 422 and r.json()["error"]["field"] == "verdict"


def test_an_auditor_reads_alarms_but_cannot_triage_them(
    sqlite_db: Database, auditor: LoggedIn
) -> None:
    raise_alarms(sqlite_db)
    [alarm] = _alarms(auditor)["alarms"]
    r = auditor.client.post(f"/api/v1/alarms/{alarm['id']}/acknowledge",
                            headers=auditor.headers())
    assert r.status_code == 403


def test_an_alarm_that_does_not_exist_is_a_404(auditor: LoggedIn) -> None:
    r = auditor.client.get("/api/v1/alarms/123456")
    assert r.status_code == 404 and r.json()["error"]["code"] == "alarm_not_found"
    assert auditor.client.get(f"/api/v1/alarms/{2**40}").status_code == 422


def test_a_device_lists_its_own_alarms_and_an_unknown_device_is_a_404(
    sqlite_db: Database, auditor: LoggedIn
) -> None:
    first, _ = raise_alarms(sqlite_db, scanning=2)
    mine = auditor.client.get(f"/api/v1/devices/{first}/alarms").json()["alarms"]
    assert [a["device_id"] for a in mine] == [first]
    r = auditor.client.get(f"/api/v1/devices/{UNKNOWN_DEVICE}/alarms")
    assert r.status_code == 404 and r.json()["error"]["code"] == "device_not_found"
