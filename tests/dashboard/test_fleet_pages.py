"""The dashboard's fleet pages at the server level: overview figures that click through,
the device list's finding, telemetry and order filters, findings on the device page, the
edit form, and scans started, watched, browsed and exported from the browser."""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Callable
from datetime import timedelta

import pytest

from fleetguard.auditlog import list_audit_entries
from fleetguard.core.clock import utcnow
from fleetguard.core.spreadsheet import csv_cell
from fleetguard.operators import Role
from fleetguard.registry import service as registry
from fleetguard.server.scan_jobs import ScanJobs
from fleetguard.store import Database
from fleetguard.telemetry import IngestService, sweep_offline
from tests.dashboard.conftest import Browser, hidden
from tests.dashboard.test_pages import assert_safe_page
from tests.findings.reports import finding, host, report
from tests.findings.support import device_at, ingest_document
from tests.findings.targets import telnet_device

TELNET = ("tcp", 23, "telnet")
HTTP = ("tcp", 80, "http")


@pytest.fixture
def weak_fleet(sqlite_db: Database) -> dict[str, str]:
    """cam: default credentials and telnet; gw: cleartext http; ok: clean. One finding of cam
    was resolved by a later scan."""
    ids = {"cam": device_at(sqlite_db, "cam-1", "127.0.0.51"),
           "gw": device_at(sqlite_db, "gw-1", "127.0.0.52"),
           "ok": device_at(sqlite_db, "ok-1", "127.0.0.53")}
    hosts = [host("127.0.0.51", open_ports=(TELNET, HTTP)),
             host("127.0.0.52", open_ports=(HTTP,)), host("127.0.0.53")]
    ingest_document(sqlite_db, report(hosts, [
        finding("127.0.0.51", 23, "default-credentials", evidence="login admin/admin: =1+2"),
        finding("127.0.0.51", 23, "cleartext-protocol"),
        finding("127.0.0.51", 80, "tls-self-signed-certificate", service="http"),
        finding("127.0.0.52", 80, "cleartext-protocol", service="http"),
    ]))
    ingest_document(sqlite_db, report(hosts, [
        finding("127.0.0.51", 23, "default-credentials", evidence="login admin/admin: =1+2"),
        finding("127.0.0.51", 23, "cleartext-protocol"),
        finding("127.0.0.52", 80, "cleartext-protocol", service="http"),
    ]))
    return ids


def _names(html: str) -> list[str]:
    return re.findall(r'<td><a href="/devices/[0-9a-f-]{36}">([^<]+)</a></td>', html)


def test_overview_figures_count_weak_devices_and_click_through(
    browser_as: Callable[[Role], Browser], weak_fleet: dict[str, str],
) -> None:
    b = browser_as(Role.AUDITOR)
    r = b.client.get("/")
    assert r.status_code == 200
    assert_safe_page(r)
    weak = re.search(r'id="weak-default-credentials" href="([^"]+)"><span class="n">(\d+)<',
                     r.text)
    assert weak and weak.group(2) == "1"
    assert _names(b.client.get(weak.group(1)).text) == ["cam-1"]
    cleartext = re.search(r'id="weak-cleartext-protocol" href="([^"]+)"><span class="n">(\d+)<',
                          r.text)
    assert cleartext and cleartext.group(2) == "2"
    assert _names(b.client.get(cleartext.group(1)).text) == ["cam-1", "gw-1"]
    critical = re.search(r'href="(/findings\?severity=critical)"><span class="n">(\d+)<', r.text)
    assert critical and critical.group(2) == "1"
    r = b.client.get(critical.group(1))
    assert r.text.count("<code>default-credentials</code>") == 1
    assert "cleartext-protocol" not in r.text


def test_overview_risk_figure_is_explained_and_its_trend_is_read_from_history(
    browser_as: Callable[[Role], Browser], weak_fleet: dict[str, str], sqlite_db: Database,
) -> None:
    from fleetguard.findings import record_risk_snapshot
    with sqlite_db.session() as s:  # what the server stored a day ago
        # cam: critical 40 + high 20 = 60; gw: high 20; ok: 0 -> 80 / 3
        assert record_risk_snapshot(s, now=utcnow() - timedelta(hours=25)).score == 26.7
    # since then the gateway's cleartext service was closed: a rescan resolves it
    ingest_document(sqlite_db, report([host("127.0.0.52", open_ports=(HTTP,))], []))
    b = browser_as(Role.AUDITOR)
    r = b.client.get("/")
    assert re.search(r'id="risk-score">20\.0<', r.text)
    assert "capped at 100" in r.text and "mean over every device" in r.text
    assert "-6.7 since 24 h ago" in r.text and "(was 26.7)" in r.text
    assert "No stored figure from 7 days ago yet" in r.text
    assert re.search(r'<polyline class="line" points="[^"]+"', r.text)


def test_the_servers_scheduler_loop_keeps_the_risk_history(
    browser_as: Callable[[Role], Browser], sqlite_db: Database, scan_jobs: ScanJobs,
) -> None:
    device_at(sqlite_db, "cam-9", "127.0.0.59")
    b = browser_as(Role.AUDITOR)
    assert "No stored figures yet" in b.client.get("/").text
    scan_jobs.run_due_scans()  # what `fleetguard serve` runs every half minute
    r = b.client.get("/")
    assert "No stored figures yet" not in r.text
    assert re.search(r'aria-label="Fleet risk, 1 stored hourly figures', r.text)


def test_overview_counts_offline_devices_from_telemetry(
    browser_as: Callable[[Role], Browser], sqlite_db: Database, weak_fleet: dict[str, str],
) -> None:
    from tests.telemetry.support import body
    from tests.telemetry.support import report as telemetry_report
    ingest = IngestService(sqlite_db, sweep_every_s=None, compact_every_s=None, linger_s=0.01)
    ingest.start()
    try:
        for name in ("cam", "gw"):
            ingest.submit_telemetry(weak_fleet[name], body(telemetry_report(1, utcnow())),
                                    "application/cbor")
        assert ingest.flush()
    finally:
        ingest.stop()
    with sqlite_db.session() as s:  # the gateway falls silent
        sweep_offline(s, utcnow() + timedelta(hours=1))
    b = browser_as(Role.AUDITOR)
    r = b.client.get("/")
    assert re.search(r'id="offline-tile" href="/devices\?online=offline"><span class="n">2<',
                     r.text)
    assert _names(b.client.get("/devices?online=offline").text) == ["cam-1", "gw-1"]
    assert _names(b.client.get("/devices?online=online").text) == []
    assert _names(b.client.get("/devices?online=offline&check=default-credentials").text) == [
        "cam-1"]


def test_device_list_sorts_by_column_and_keeps_filters_across_pages(
    browser_as: Callable[[Role], Browser], sqlite_db: Database,
) -> None:
    with sqlite_db.session() as s:
        for i in range(60):
            registry.register_device(s, name=f"node-{(i * 37) % 60:02d}", actor="t",
                                     labels={"site": "oslo" if i % 2 else "rome"})
    b = browser_as(Role.AUDITOR)
    first = b.client.get("/devices?labels=site%3Doslo&sort=-name")
    names = _names(first.text)
    assert len(names) == 30 and names == sorted(names, reverse=True)
    assert 'aria-sort="descending"' in first.text
    r = b.client.get("/devices?sort=name")
    assert _names(r.text)[:3] == ["node-00", "node-01", "node-02"]
    nxt = re.search(r'href="(/devices\?[^"]*cursor=[^"]+)" rel="next"', r.text)
    assert nxt
    page2 = _names(b.client.get(nxt.group(1).replace("&amp;", "&")).text)
    assert page2 == [f"node-{i}" for i in range(50, 60)]


@pytest.mark.parametrize("query", [
    "sort=colour", "severity=dire", "online=maybe", "state=lost", "sort=name&cursor=zzz",
])
def test_bad_list_parameters_are_explained_with_a_422(
    browser_as: Callable[[Role], Browser], query: str,
) -> None:
    b = browser_as(Role.AUDITOR)
    r = b.client.get(f"/devices?{query}")
    assert r.status_code == 422 and 'role="alert"' in r.text
    assert_safe_page(r)


def test_device_page_shows_open_and_resolved_findings_with_evidence_and_remediation(
    browser_as: Callable[[Role], Browser], weak_fleet: dict[str, str],
) -> None:
    b = browser_as(Role.AUDITOR)
    r = b.client.get(f"/devices/{weak_fleet['cam']}")
    assert "Findings: 2 open, 1 resolved" in r.text
    open_part, resolved_part = r.text.split('class="findings resolved-findings"')
    assert "<code>default-credentials</code>" in open_part
    assert "login admin/admin: =1+2" in open_part and "fix it" in open_part
    assert "ETSI EN 303 645 5.1-1" in open_part
    assert "<code>tls-self-signed-certificate</code>" in resolved_part.split("</section>")[0]
    assert_safe_page(r)


def test_operator_edits_name_and_labels_and_it_is_audited(
    browser_as: Callable[[Role], Browser], weak_fleet: dict[str, str], sqlite_db: Database,
) -> None:
    b = browser_as(Role.OPERATOR)
    url = f"/devices/{weak_fleet['gw']}/edit"
    form = b.client.get(url)
    assert form.status_code == 200 and 'name="labels"' in form.text
    r = b.client.post(url, data={"csrf_token": hidden(form.text, "csrf_token"),
                                 "name": "gateway-berlin", "labels": "site=berlin\ntier=prod"},
                      follow_redirects=False)
    assert r.status_code == 303
    with sqlite_db.read_session() as s:
        d = registry.get_device(s, weak_fleet["gw"])
        assert d.name == "gateway-berlin" and d.labels == {"site": "berlin", "tier": "prod"}
        entry = list_audit_entries(s, action="device.update", newest_first=True, limit=1)[0]
    assert entry.actor == "operator:operator-web" and entry.details["name"] == "gateway-berlin"


def test_edit_form_refuses_bad_input_missing_csrf_and_readers(
    browser_as: Callable[[Role], Browser], weak_fleet: dict[str, str], sqlite_db: Database,
) -> None:
    op = browser_as(Role.OPERATOR)
    url = f"/devices/{weak_fleet['gw']}/edit"
    r = op.client.post(url, data={"csrf_token": op.csrf, "name": "x", "labels": "Bad Key=1"})
    assert r.status_code == 422 and 'role="alert"' in r.text
    r = op.client.post(url, data={"csrf_token": op.csrf, "name": "x", "labels": "no-equals"})
    assert r.status_code == 422
    assert op.client.post(url, data={"name": "x"}).status_code == 403
    auditor = browser_as(Role.AUDITOR)
    assert auditor.client.get(url).status_code == 403
    assert auditor.client.post(url, data={"csrf_token": auditor.csrf,
                                          "name": "x"}).status_code == 403
    assert "/edit" not in auditor.client.get(f"/devices/{weak_fleet['gw']}").text
    with sqlite_db.read_session() as s:
        assert registry.get_device(s, weak_fleet["gw"]).name == "gw-1"


@pytest.mark.parametrize(("fields", "message"), [
    ({"targets": ""}, "targets"),
    ({"targets": "10.0.0.0/8"}, "4096"),
    ({"targets": "127.0.0.1", "timeout": "300"}, "timeout"),
    ({"targets": "127.0.0.1", "rate": "fast"}, "rate"),
    ({"targets": "127.0.0.1", "ports": "23-"}, "port"),
])
def test_scan_form_explains_bad_targets_and_options(
    browser_as: Callable[[Role], Browser], fields: dict[str, str], message: str,
) -> None:
    b = browser_as(Role.OPERATOR)
    r = b.client.post("/scans", data={"csrf_token": b.csrf, **fields})
    assert r.status_code == 422, r.text[:300]
    error = re.search(r'id="scan-error">([^<]+)<', r.text)
    assert error and message in error.group(1).lower(), error
    assert_safe_page(r)


def test_auditor_sees_scans_but_cannot_start_one(
    browser_as: Callable[[Role], Browser], weak_fleet: dict[str, str],
) -> None:
    b = browser_as(Role.AUDITOR)
    r = b.client.get("/scans")
    assert r.status_code == 200 and 'action="/scans"' not in r.text
    assert r.text.count('href="/scans/') == 2
    assert b.client.post("/scans", data={"csrf_token": b.csrf,
                                         "targets": "127.0.0.1"}).status_code == 403


def test_operator_starts_a_scan_watches_it_and_browses_and_exports_its_results(
    browser_as: Callable[[Role], Browser], sqlite_db: Database, scan_jobs: ScanJobs,
) -> None:
    address = "127.0.0.57"
    cam = device_at(sqlite_db, "telnet-cam", address)
    b = browser_as(Role.OPERATOR)
    form = b.client.get("/scans")
    assert 'id="start-scan"' in form.text and 'name="login_delay"' in form.text
    with telnet_device(address) as port:
        r = b.client.post("/scans", data={
            "csrf_token": b.csrf, "targets": address, "ports": str(port), "timeout": "1",
            "rate": "0", "max_logins": "2"}, follow_redirects=False)  # credentials unchecked
        assert r.status_code == 303, r.text[:500]
        scan_url = r.headers["location"]
        events = b.client.get(f"{scan_url}/events?seconds=20")
        assert scan_jobs.wait_for_scans(60)
    progress = [json.loads(line[6:]) for line in events.text.splitlines()
                if line.startswith("data: ")]
    assert progress[-1]["status"] == "finished" and progress[-1]["percent"] == 100
    page = b.client.get(scan_url)
    assert 'data-scan-status="finished"' in page.text and f'href="/devices/{cam}"' in page.text
    assert "credentials=False" in page.text  # the safety options it ran with
    by_check = b.client.get(f"{scan_url}?view=check&check=cleartext-protocol")
    assert "<code>cleartext-protocol</code>" in by_check.text and address in by_check.text
    by_host = b.client.get(f"{scan_url}?view=host&host={address}")
    assert "Findings on" in by_host.text and "service-exposed" in by_host.text
    doc = b.client.get(f"{scan_url}/report.json")
    assert doc.status_code == 200 and "attachment" in doc.headers["content-disposition"]
    assert doc.json()["schema"] == "fleetguard.scan/1"
    exported = b.client.get(f"{scan_url}/findings.csv")
    assert exported.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(exported.text)))
    assert {r["check"] for r in rows} == {"cleartext-protocol", "service-exposed"}
    assert all(r["device_id"] == cam for r in rows)


def test_csv_export_neutralises_spreadsheet_formulas(
    browser_as: Callable[[Role], Browser], sqlite_db: Database,
) -> None:
    scan = ingest_document(sqlite_db, report([host("127.0.0.58", open_ports=(HTTP,))], [
        finding("127.0.0.58", 80, "cleartext-protocol", service="http",
                evidence='=HYPERLINK("http://evil.example","x")'),
        finding("127.0.0.58", 80, "service-exposed", service="http", evidence="@SUM(1)"),
    ]))
    b = browser_as(Role.AUDITOR)
    rows = list(csv.DictReader(io.StringIO(b.client.get(f"/scans/{scan.id}/findings.csv").text)))
    evidence = {r["check"]: r["evidence"] for r in rows}
    assert evidence["cleartext-protocol"].startswith("'=HYPERLINK")
    assert evidence["service-exposed"] == "'@SUM(1)"


@pytest.mark.parametrize(("value", "cell"), [
    ("=1+2", "'=1+2"), ("+1", "'+1"), ("-1", "'-1"), ("@x", "'@x"), ("\tx", "'\tx"),
    ("plain", "plain"), ("a=b", "a=b"), (23, "23"), (None, ""),
])
def test_csv_cells_that_a_spreadsheet_would_run_get_a_quote(value: object, cell: str) -> None:
    assert csv_cell(value) == cell


def test_unknown_scans_and_bad_findings_filters_are_4xx(
    browser_as: Callable[[Role], Browser],
) -> None:
    b = browser_as(Role.AUDITOR)
    missing = "00000000-0000-4000-8000-000000000000"
    for url in (f"/scans/{missing}", "/scans/not-a-scan", f"/scans/{missing}/report.json",
                f"/scans/{missing}/findings.csv"):
        assert b.client.get(url).status_code == 404, url
    assert b.client.get(f"/scans/{missing}/events").status_code == 404
    assert b.client.get("/findings?severity=dire").status_code == 422
    assert b.client.get("/findings?cursor=zzz").status_code == 422
    assert b.client.get("/scans?cursor=zzz").status_code == 422


def test_the_scan_list_refreshes_itself_only_while_a_scan_runs(
    browser_as: Callable[[Role], Browser], sqlite_db: Database,
) -> None:
    from fleetguard.findings import ScanSource, create_scan
    b = browser_as(Role.AUDITOR)
    assert 'hx-trigger="every 2s"' not in b.client.get("/scans").text
    with sqlite_db.session() as s:
        create_scan(s, actor="test", source=ScanSource.SERVER, targets=["127.0.0.1"],
                    options={})
    r = b.client.get("/scans")
    assert 'id="scan-list" hx-get="/scans" hx-trigger="every 2s"' in r.text
    assert_safe_page(r)
