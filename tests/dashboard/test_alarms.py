"""The alarm queue and the alarm page, over alarms raised by real reports (ingestion ->
detection): what each role sees and may do, triage through the pages (audited, CSRF
checked), filters, sorts, the live refresh, and clear errors for bad input."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import httpx
import pytest

from fleetguard import auditlog
from fleetguard.detect.alarm_records import AlarmFilter, AlarmSort, get_alarm, list_alarms
from fleetguard.detect.alarms import AlarmState, AlarmVerdict
from fleetguard.detect.triage import list_feedback
from fleetguard.operators import Role
from fleetguard.registry import service as registry
from fleetguard.store import Database
from tests.dashboard.alarms_lab import Pipeline, ReportingDevice, detection_pipeline
from tests.dashboard.conftest import Browser, hidden


@pytest.fixture
def pipeline(sqlite_db: Database) -> Iterator[Pipeline]:
    with detection_pipeline(sqlite_db) as running:
        yield running


@dataclass
class Fleet:
    camera: str  # ran a port scan: a high scanning alarm (threshold)
    gateway: str  # ran a binary from /tmp (high, allow-list), then pinned its CPU (medium)
    scan_alarm: int
    exec_alarm: int
    miner_alarm: int


def _register(db: Database, name: str) -> str:
    with db.session() as session:
        return registry.register_device(session, name=name, actor="test").id


def _alarm_of(db: Database, rule_id: str) -> int:
    with db.session() as session:
        return next(a.id for a in list_alarms(session).alarms if a.rule_id == rule_id)


@pytest.fixture
def fleet(sqlite_db: Database, pipeline: Pipeline) -> Fleet:
    camera, gateway = _register(sqlite_db, "cam-7"), _register(sqlite_db, "gw-2")
    pipeline.scan(ReportingDevice(camera))
    reporting = ReportingDevice(gateway)
    pipeline.drop(reporting)
    pipeline.mine(reporting)
    return Fleet(camera, gateway, _alarm_of(sqlite_db, "scan.refused-connections"),
                 _alarm_of(sqlite_db, "exec.outside-system-paths"),
                 _alarm_of(sqlite_db, "miner.cpu-pinned"))


def _rows(html: str) -> list[int]:
    """The alarm ids of the queue's rows, in order."""
    return [int(n) for n in re.findall(r'<tr data-alarm="(\d+)">', html)]


def _triage(browser: Browser, alarm_id: int, action: str, **form: str) -> httpx.Response:
    page = browser.client.get(f"/alarms/{alarm_id}/confirm/{action}")
    assert page.status_code == 200, page.text
    data = {"csrf_token": hidden(page.text, "csrf_token"), **form}
    return browser.client.post(f"/alarms/{alarm_id}/actions/{action}", data=data,
                               follow_redirects=False)


# --- the queue ----------------------------------------------------------------------------


def test_the_queue_lists_active_alarms_worst_first_with_what_each_saw(
    fleet: Fleet, browser_as: Callable[[Role], Browser]
) -> None:
    r = browser_as(Role.AUDITOR).client.get("/alarms")
    assert r.status_code == 200
    rows = _rows(r.text)
    assert set(rows) == {fleet.scan_alarm, fleet.exec_alarm, fleet.miner_alarm}
    assert rows[-1] == fleet.miner_alarm  # the only medium one, after the high ones
    assert f'href="/devices/{fleet.camera}">cam-7</a>' in r.text
    assert "scan.refused-connections" in r.text and "tcp_failures_per_s 155 &gt; 2" in r.text
    assert 'aria-sort="descending"><a href="/alarms?state=active&amp;sort=severity">' in r.text


def test_the_queue_shows_active_alarms_by_default_and_others_when_asked(
    sqlite_db: Database, fleet: Fleet, browser_as: Callable[[Role], Browser]
) -> None:
    operator = browser_as(Role.OPERATOR)
    assert _triage(operator, fleet.scan_alarm, "acknowledge").status_code == 303
    client = operator.client
    assert fleet.scan_alarm not in _rows(client.get("/alarms").text)
    assert _rows(client.get("/alarms?state=acknowledged").text) == [fleet.scan_alarm]
    assert fleet.scan_alarm in _rows(client.get("/alarms?state=open").text)
    assert _rows(client.get("/alarms?state=resolved").text) == []
    assert len(_rows(client.get("/alarms?state=any").text)) == 3


def test_the_queue_filters_by_severity_confidence_family_kind_and_device(
    fleet: Fleet, browser_as: Callable[[Role], Browser]
) -> None:
    client = browser_as(Role.AUDITOR).client
    assert fleet.miner_alarm not in _rows(client.get("/alarms?severity=high").text)
    assert _rows(client.get("/alarms?family=miner").text) == [fleet.miner_alarm]
    assert _rows(client.get("/alarms?kind=allow_list").text) == [fleet.exec_alarm]
    assert set(_rows(client.get(f"/alarms?device={fleet.gateway}").text)) == {
        fleet.exec_alarm, fleet.miner_alarm}
    assert len(_rows(client.get("/alarms?confidence=high").text)) == 3
    both = client.get(f"/alarms?device={fleet.gateway}&severity=high")
    assert _rows(both.text) == [fleet.exec_alarm]
    # the filters stay chosen in the form
    assert '<option value="high" selected>' in both.text


def test_the_queue_sorts_by_last_seen_and_by_confidence_as_the_service_orders(
    sqlite_db: Database, fleet: Fleet, browser_as: Callable[[Role], Browser]
) -> None:
    client = browser_as(Role.AUDITOR).client
    latest = _rows(client.get("/alarms?sort=last_seen").text)
    assert latest[0] == fleet.miner_alarm  # its reports are the gateway's latest
    by_confidence = client.get("/alarms?sort=confidence")
    with sqlite_db.session() as session:
        expected = list_alarms(session, AlarmFilter(states=frozenset({AlarmState.ACTIVE})),
                               sort=AlarmSort.CONFIDENCE).alarms
    assert _rows(by_confidence.text) == [a.id for a in expected]
    assert re.search(r'aria-sort="descending"><a href="[^"]*sort=confidence', by_confidence.text)


def test_the_queue_pages_with_a_cursor_keeping_its_filters(
    fleet: Fleet, browser_as: Callable[[Role], Browser], monkeypatch: pytest.MonkeyPatch
) -> None:
    from fleetguard.dashboard import alarms as alarm_pages

    monkeypatch.setattr(alarm_pages, "PAGE_SIZE", 2)
    client = browser_as(Role.AUDITOR).client
    first = client.get("/alarms?state=any")
    next_url = re.search(r'href="(/alarms\?[^"]*cursor=[^"]+)" rel="next"', first.text)
    assert next_url, first.text
    second = client.get(next_url.group(1).replace("&amp;", "&"))
    shown = _rows(first.text) + _rows(second.text)
    assert sorted(shown) == sorted([fleet.scan_alarm, fleet.exec_alarm, fleet.miner_alarm])
    assert 'rel="next"' not in second.text and "« First page" in second.text


@pytest.mark.parametrize("query", ["severity=dire", "state=gone", "kind=magic",
                                   "sort=loudest", "cursor=not-a-cursor"])
def test_a_bad_filter_is_a_422_page_that_says_which(
    fleet: Fleet, browser_as: Callable[[Role], Browser], query: str
) -> None:
    r = browser_as(Role.AUDITOR).client.get(f"/alarms?{query}")
    assert r.status_code == 422
    assert 'class="error" role="alert"' in r.text
    assert query.split("=")[0] in r.text.split('role="alert">')[1].split("</p>")[0]


def test_the_live_refresh_answers_nothing_new_until_an_alarm_arrives(
    sqlite_db: Database, pipeline: Pipeline, fleet: Fleet,
    browser_as: Callable[[Role], Browser],
) -> None:
    client = browser_as(Role.AUDITOR).client
    live_url = re.search(r'id="alarm-results" hx-get="([^"]+)"',
                         client.get("/alarms").text)
    assert live_url
    poll = live_url.group(1).replace("&amp;", "&")
    assert client.get(poll, headers={"HX-Request": "true"}).status_code == 204
    pipeline.scan(ReportingDevice(_register(sqlite_db, "cam-9")))
    fresh = client.get(poll, headers={"HX-Request": "true"})
    assert fresh.status_code == 200
    assert len(_rows(fresh.text)) == 4


def test_the_navigation_links_the_queue_with_the_count_of_active_alarms(
    fleet: Fleet, browser_as: Callable[[Role], Browser]
) -> None:
    client = browser_as(Role.AUDITOR).client
    home = client.get("/")
    assert 'href="/alarms"' in home.text and 'hx-get="/alarms/count"' in home.text
    count = client.get("/alarms/count")
    assert count.status_code == 200
    assert re.match(r'<span class="nav-count">3<', count.text)


# --- one alarm ----------------------------------------------------------------------------


def test_the_alarm_page_explains_the_alarm(
    fleet: Fleet, browser_as: Callable[[Role], Browser]
) -> None:
    r = browser_as(Role.AUDITOR).client.get(f"/alarms/{fleet.scan_alarm}")
    assert r.status_code == 200
    text = r.text
    assert "scan.refused-connections" in text and "(threshold)" in text
    assert "<code>tcp_failures_per_s</code>" in text and "per second" in text
    assert '<dd id="alarm-observed">155</dd>' in text
    assert "alarm when &gt; 2" in text
    assert "1 report, seq" in text
    # the reports behind it: the device's stored series over that range, and as data
    assert "tcp attempt fails" in text and "<polyline" in text
    assert f"/api/v1/devices/{fleet.camera}/telemetry/tcp_attempt_fails?start=" in text


def test_the_alarm_page_names_what_is_new(
    fleet: Fleet, browser_as: Callable[[Role], Browser]
) -> None:
    r = browser_as(Role.AUDITOR).client.get(f"/alarms/{fleet.exec_alarm}")
    assert "What is new" in r.text and "<li>/tmp/.x/mirai</li>" in r.text


@pytest.mark.parametrize(("role", "actions"), [
    (Role.ADMIN, ["acknowledge", "resolve", "true_positive", "false_positive"]),
    (Role.OPERATOR, ["acknowledge", "resolve", "true_positive", "false_positive"]),
    (Role.AUDITOR, []),
])
def test_triage_actions_are_shown_only_to_roles_that_may_triage(
    fleet: Fleet, browser_as: Callable[[Role], Browser], role: Role, actions: list[str]
) -> None:
    r = browser_as(role).client.get(f"/alarms/{fleet.scan_alarm}")
    assert r.status_code == 200
    assert re.findall(r'id="action-([a-z_]+)"', r.text) == actions
    if not actions:
        assert "may read alarms but not triage them" in r.text


@pytest.mark.parametrize("alarm_id", ["999999", "0", "abc", "99999999999999999999", "-1"])
def test_an_unknown_alarm_is_a_404_page(
    fleet: Fleet, browser_as: Callable[[Role], Browser], alarm_id: str
) -> None:
    client = browser_as(Role.OPERATOR).client
    for path in (f"/alarms/{alarm_id}", f"/alarms/{alarm_id}/confirm/acknowledge"):
        r = client.get(path)
        assert r.status_code == 404, path
        assert "Not found" in r.text


def test_an_unknown_triage_action_is_a_404_page(
    fleet: Fleet, browser_as: Callable[[Role], Browser]
) -> None:
    assert browser_as(Role.OPERATOR).client.get(
        f"/alarms/{fleet.scan_alarm}/confirm/delete").status_code == 404


# --- triage -------------------------------------------------------------------------------


def _audit_actions(db: Database, target: str) -> list[tuple[str, str, dict[str, object]]]:
    with db.session() as session:
        return [(e.action, e.actor, e.details)
                for e in auditlog.list_audit_entries(session, limit=1000)
                if e.target == target]


def test_acknowledging_from_the_page_changes_the_alarm_and_is_audited(
    sqlite_db: Database, fleet: Fleet, browser_as: Callable[[Role], Browser]
) -> None:
    operator = browser_as(Role.OPERATOR)
    page = operator.client.get(f"/alarms/{fleet.scan_alarm}/confirm/acknowledge")
    assert "Confirm: acknowledge" in page.text and 'id="confirm-action"' in page.text
    r = _triage(operator, fleet.scan_alarm, "acknowledge")
    assert r.status_code == 303
    assert r.headers["location"] == f"/alarms/{fleet.scan_alarm}?done=acknowledge"
    with sqlite_db.session() as session:
        alarm = get_alarm(session, fleet.scan_alarm)
    assert (alarm.state, alarm.acknowledged_by) == (AlarmState.ACKNOWLEDGED,
                                                    "operator:operator-web")
    assert ("alarm.acknowledge", "operator:operator-web") in [
        (a, who) for a, who, _ in _audit_actions(sqlite_db, f"alarm:{fleet.scan_alarm}")]
    after = operator.client.get(f"/alarms/{fleet.scan_alarm}?done=acknowledge")
    assert "Done: acknowledge" in after.text
    assert re.findall(r'id="action-([a-z_]+)"', after.text) == [
        "resolve", "true_positive", "false_positive"]


def test_resolving_with_a_note_writes_the_note_to_the_audit_log(
    sqlite_db: Database, fleet: Fleet, browser_as: Callable[[Role], Browser]
) -> None:
    r = _triage(browser_as(Role.ADMIN), fleet.miner_alarm, "resolve",
                note="firmware build job, expected")
    assert r.status_code == 303
    with sqlite_db.session() as session:
        assert get_alarm(session, fleet.miner_alarm).state is AlarmState.RESOLVED
    [(_, _, details)] = [x for x in _audit_actions(sqlite_db, f"alarm:{fleet.miner_alarm}")
                         if x[0] == "alarm.resolve"]
    assert details["note"] == "firmware build job, expected"


def test_a_false_positive_resolves_the_alarm_and_the_page_says_what_it_allowed(
    sqlite_db: Database, fleet: Fleet, browser_as: Callable[[Role], Browser]
) -> None:
    operator = browser_as(Role.OPERATOR)
    confirm = operator.client.get(f"/alarms/{fleet.exec_alarm}/confirm/false_positive")
    assert "becomes allowed on this device" in confirm.text
    r = _triage(operator, fleet.exec_alarm, "false_positive", note="our updater")
    assert r.status_code == 303
    with sqlite_db.session() as session:
        alarm = get_alarm(session, fleet.exec_alarm)
        feedback = list_feedback(session, device_id=fleet.gateway)
    assert (alarm.state, alarm.verdict, alarm.verdict_note) == (
        AlarmState.RESOLVED, AlarmVerdict.FALSE_POSITIVE, "our updater")
    assert [f.subject for f in feedback] == ["executable:/tmp/.x/mirai"]
    page = operator.client.get(f"/alarms/{fleet.exec_alarm}")
    assert "<code>executable:/tmp/.x/mirai</code> allowed on this device" in page.text
    assert "verdict" in [a.split(".")[1] for a, _, _ in
                         _audit_actions(sqlite_db, f"alarm:{fleet.exec_alarm}")]


def test_a_false_positive_on_a_threshold_suppresses_its_rule_for_the_period_chosen(
    sqlite_db: Database, fleet: Fleet, browser_as: Callable[[Role], Browser]
) -> None:
    r = _triage(browser_as(Role.OPERATOR), fleet.miner_alarm, "false_positive",
                note="benchmark run", suppress_for="1h")
    assert r.status_code == 303
    with sqlite_db.session() as session:
        [suppression] = list_feedback(session, device_id=fleet.gateway)
    assert suppression.subject is None and suppression.until is not None
    assert (suppression.until - suppression.created_at).total_seconds() == pytest.approx(3600)


def test_a_true_positive_keeps_the_alarm_open(
    sqlite_db: Database, fleet: Fleet, browser_as: Callable[[Role], Browser]
) -> None:
    assert _triage(browser_as(Role.OPERATOR), fleet.scan_alarm,
                   "true_positive").status_code == 303
    with sqlite_db.session() as session:
        alarm = get_alarm(session, fleet.scan_alarm)
    assert (alarm.state, alarm.verdict) == (AlarmState.ACTIVE, AlarmVerdict.TRUE_POSITIVE)


def test_a_triage_post_without_the_csrf_token_is_refused_and_changes_nothing(
    sqlite_db: Database, fleet: Fleet, browser_as: Callable[[Role], Browser]
) -> None:
    client = browser_as(Role.OPERATOR).client
    for data in ({}, {"csrf_token": "forged"}):
        r = client.post(f"/alarms/{fleet.scan_alarm}/actions/acknowledge", data=data,
                        follow_redirects=False)
        assert r.status_code == 403
        assert "Form expired" in r.text
    with sqlite_db.session() as session:
        assert get_alarm(session, fleet.scan_alarm).state is AlarmState.ACTIVE
    assert [a for a, _, _ in _audit_actions(sqlite_db, f"alarm:{fleet.scan_alarm}")] == [
        "alarm.open"]


def test_an_auditor_may_not_triage_even_with_a_valid_token(
    sqlite_db: Database, fleet: Fleet, browser_as: Callable[[Role], Browser]
) -> None:
    auditor = browser_as(Role.AUDITOR)
    assert auditor.client.get(
        f"/alarms/{fleet.scan_alarm}/confirm/acknowledge").status_code == 403
    r = auditor.client.post(f"/alarms/{fleet.scan_alarm}/actions/acknowledge",
                            data={"csrf_token": auditor.csrf}, follow_redirects=False)
    assert r.status_code == 403 and "Not allowed" in r.text
    with sqlite_db.session() as session:
        assert get_alarm(session, fleet.scan_alarm).state is AlarmState.ACTIVE


def test_acknowledging_an_alarm_twice_is_a_409_page_saying_why(
    fleet: Fleet, browser_as: Callable[[Role], Browser]
) -> None:
    operator = browser_as(Role.OPERATOR)
    page = operator.client.get(f"/alarms/{fleet.scan_alarm}/confirm/acknowledge")
    token = hidden(page.text, "csrf_token")
    url = f"/alarms/{fleet.scan_alarm}/actions/acknowledge"
    assert operator.client.post(url, data={"csrf_token": token},
                                follow_redirects=False).status_code == 303
    again = operator.client.post(url, data={"csrf_token": token}, follow_redirects=False)
    assert again.status_code == 409
    assert "is acknowledged, not active" in again.text


def test_triage_of_an_unknown_alarm_is_a_404_page(
    fleet: Fleet, browser_as: Callable[[Role], Browser]
) -> None:
    operator = browser_as(Role.OPERATOR)
    r = operator.client.post("/alarms/424242/actions/resolve",
                             data={"csrf_token": operator.csrf}, follow_redirects=False)
    assert r.status_code == 404 and "no alarm 424242" in r.text


def test_an_unknown_suppression_period_is_refused_and_changes_nothing(
    sqlite_db: Database, fleet: Fleet, browser_as: Callable[[Role], Browser]
) -> None:
    r = _triage(browser_as(Role.OPERATOR), fleet.miner_alarm, "false_positive",
                suppress_for="forever")
    assert r.status_code == 422
    assert "unknown suppression period" in r.text
    with sqlite_db.session() as session:
        assert get_alarm(session, fleet.miner_alarm).verdict is None


# --- the overview -------------------------------------------------------------------------


def test_the_overview_shows_open_alarms_by_severity_and_they_raise_the_risk(
    fleet: Fleet, browser_as: Callable[[Role], Browser]
) -> None:
    html = browser_as(Role.AUDITOR).client.get("/").text
    tile = re.search(r'id="alarms-high" href="[^"]+"><span class="n">(\d+)<', html)
    assert tile and tile.group(1) == "2"
    assert re.search(r'id="alarms-medium" href="[^"]+"><span class="n">1<', html)
    # 2 high (30 each) and 1 medium (12) over 2 devices: 36 points added, no finding
    assert re.search(r'id="risk-alarms">36\.0<', html)
    assert re.search(r'id="risk-score">36\.0<', html)
    assert "high 30" in html  # the weights are stated on the page


def test_the_done_notice_names_only_a_triage_action(
    fleet: Fleet, browser_as: Callable[[Role], Browser]
) -> None:
    client = browser_as(Role.AUDITOR).client
    assert "Done:" not in client.get(f"/alarms/{fleet.scan_alarm}?done=%3Cb%3Ehi").text
    assert "Done: resolve" in client.get(f"/alarms/{fleet.scan_alarm}?done=resolve").text
