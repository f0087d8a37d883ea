"""Scans, findings and schedules over the operator API: uploads, server-run scans of a
real loopback device, read back, bad input."""

from __future__ import annotations

import gzip
import json
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from fleetguard.operators import Role
from fleetguard.server.scan_jobs import ScanJobs
from tests.findings.reports import finding, host, report
from tests.findings.targets import telnet_device
from tests.support import LoggedIn

CAM = "127.0.0.61"


def _device(op: LoggedIn, name: str, address: str) -> str:
    r = op.client.post("/api/v1/devices", json={"name": name}, headers=op.headers())
    assert r.status_code == 201, r.text
    device_id: str = r.json()["id"]
    r = op.client.patch(f"/api/v1/devices/{device_id}", json={"addresses": [address]},
                        headers=op.headers())
    assert r.status_code == 200, r.text
    return device_id


def _post(op: LoggedIn, body: Any, **kw: Any) -> Any:
    return op.client.post("/api/v1/scans", json=body, headers=op.headers(), **kw)


def _wait(op: LoggedIn, scan_id: str, timeout: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        scan: dict[str, Any] = op.client.get(f"/api/v1/scans/{scan_id}").json()
        if scan["status"] != "running":
            return scan
        time.sleep(0.2)
    raise AssertionError(f"scan {scan_id} still running")


def test_upload_and_read_back(login_as: Callable[[Role], LoggedIn]) -> None:
    op = login_as(Role.OPERATOR)
    cam = _device(op, "cam", CAM)
    doc = report([host(CAM, open_ports=(("tcp", 23, "telnet"),)), host("127.0.0.62")],
                 [finding(CAM, 23, "cleartext-protocol"), finding("127.0.0.62", 80, "no-authentication",
                                                                  service="http")],
                 port_count=2)
    r = _post(op, {"report": doc, "ports": "23,80"})
    assert r.status_code == 201, r.text
    scan = r.json()
    assert scan["status"] == "finished" and scan["source"] == "upload" and scan["progress"] == 1.0
    assert scan["outcome"]["opened"] == 2 and scan["outcome"]["hosts_matched"] == 1
    assert scan["requested_by"].endswith("operator-user")

    auditor = login_as(Role.AUDITOR)
    detail = auditor.client.get(f"/api/v1/scans/{scan['id']}").json()
    assert {(h["address"], h["matched_by"], h["device_id"]) for h in detail["hosts"]} == {
        (CAM, "address", cam), ("127.0.0.62", "unmatched", None)}
    assert auditor.client.get(f"/api/v1/scans/{scan['id']}/report").json() == doc
    assert auditor.client.get("/api/v1/scans").json()["scans"][0]["id"] == scan["id"]

    mine = auditor.client.get(f"/api/v1/devices/{cam}/findings").json()["findings"]
    assert [(f["check"], f["state"], f["severity"]) for f in mine] == [("cleartext-protocol", "open", "high")]
    unmatched = auditor.client.get("/api/v1/findings", params={"unmatched": True}).json()["findings"]
    assert [f["host"] for f in unmatched] == ["127.0.0.62"]
    summary = auditor.client.get("/api/v1/findings/summary").json()
    assert summary["open"]["high"] == 2

    # Rescan with telnet closed (the port list says 23 was scanned): resolved.
    r = _post(op, {"report": report([host(CAM)], [], port_count=2), "ports": "23,80"})
    assert r.json()["outcome"]["resolved"] == 1
    assert op.client.get(f"/api/v1/devices/{cam}/findings", params={"state": "resolved"}).json()[
        "findings"][0]["check"] == "cleartext-protocol"


def test_gzip_upload(login_as: Callable[[Role], LoggedIn]) -> None:
    op = login_as(Role.OPERATOR)
    # Many findings: over the 1 MiB body limit as JSON, well under it compressed.
    many = [finding(CAM, 1 + i, "service-exposed", evidence="x" * 200) for i in range(6000)]
    body = json.dumps({"report": report([host(CAM)], many)}).encode()
    assert len(body) > 1024 * 1024
    r = op.client.post("/api/v1/scans", content=gzip.compress(body),
                       headers={**op.headers(), "Content-Type": "application/json",
                                "Content-Encoding": "gzip"})
    assert r.status_code == 201, r.text
    assert r.json()["outcome"]["opened"] == 6000


@pytest.mark.parametrize(("body", "status", "code"), [
    ({"report": {"schema": "fleetguard.scan/1"}}, 422, "invalid_report"),
    ({"report": report([], []), "surprise": True}, 422, "validation_failed"),
    ({"report": {**report([], []), "surprise": True}}, 422, "invalid_report"),
    ({"report": report([], []), "ports": "23,80-"}, 422, "invalid_port_spec"),
    ({"report": report([], []), "ports": "23"}, 422, "validation_failed"),  # report says 27 ports
    ({"report": "text"}, 422, "validation_failed"),
    ({"targets": []}, 422, "validation_failed"),
    ({"targets": ["10.0.0.0/8"]}, 422, None),  # too large for a server scan
    ({"targets": ["127.0.0.1"], "options": {"credentials_file": "/etc/shadow"}}, 422, "validation_failed"),
    ({"nothing": 1}, 422, "validation_failed"),
    ([1, 2], 422, "validation_failed"),
])
def test_bad_input_is_4xx_with_a_reason(
    login_as: Callable[[Role], LoggedIn], body: Any, status: int, code: str | None
) -> None:
    op = login_as(Role.OPERATOR)
    r = _post(op, body)
    assert r.status_code == status, r.text
    assert r.json()["error"]["message"]
    if code:
        assert r.json()["error"]["code"] == code, r.text


def test_bodies_that_are_not_json_or_too_large(login_as: Callable[[Role], LoggedIn]) -> None:
    op = login_as(Role.OPERATOR)
    headers = {**op.headers(), "Content-Type": "application/json"}
    r = op.client.post("/api/v1/scans", content=b"{not json", headers=headers)
    assert r.status_code == 422 and r.json()["error"]["code"] == "malformed_json"
    r = op.client.post("/api/v1/scans", content=b"x" * (1024 * 1024 + 1), headers=headers)
    assert r.status_code == 413
    bomb = gzip.compress(b" " * (40 * 1024 * 1024))
    r = op.client.post("/api/v1/scans", content=bomb, headers={**headers, "Content-Encoding": "gzip"})
    assert r.status_code == 413, r.text
    r = op.client.post("/api/v1/scans", content=b"not gzip", headers={**headers, "Content-Encoding": "gzip"})
    assert r.status_code == 422
    r = op.client.post("/api/v1/scans", content=b"{}", headers={**headers, "Content-Encoding": "br"})
    assert r.status_code == 422
    assert op.client.get("/api/v1/findings", params={"severity": "dire"}).status_code == 422
    assert op.client.get("/api/v1/findings", params={"cursor": "zzz"}).status_code == 422
    assert op.client.get("/api/v1/scans/not-a-scan").status_code == 404
    assert op.client.get("/api/v1/devices/not-a-device/findings").status_code == 404


def test_auditor_cannot_upload(login_as: Callable[[Role], LoggedIn]) -> None:
    auditor = login_as(Role.AUDITOR)
    assert _post(auditor, {"report": report([], [])}).status_code == 403


def test_background_scan_of_a_loopback_device_lands_on_the_device(
    login_as: Callable[[Role], LoggedIn]
) -> None:
    op = login_as(Role.OPERATOR)
    address = "127.0.0.63"
    cam = _device(op, "telnet-cam", address)
    with telnet_device(address) as port:
        r = _post(op, {"targets": [address], "ports": str(port),
                       "options": {"credentials": False, "timeout": 1.0, "rate": 0}})
        assert r.status_code == 202, r.text
        started = r.json()
        assert started["status"] == "running" and started["source"] == "server"
        scan = _wait(op, started["id"])
    assert scan["status"] == "finished", scan
    assert scan["progress"] == 1.0 and scan["progress_done"] == scan["progress_total"] == 1
    assert scan["hosts"] == [{"address": address, "status": "up", "device_id": cam,
                              "matched_by": "address", "findings": 2}]
    checks = {f["check"]: f for f in op.client.get(f"/api/v1/devices/{cam}/findings").json()["findings"]}
    assert set(checks) == {"cleartext-protocol", "service-exposed"}
    assert checks["cleartext-protocol"]["port"] == port and checks["cleartext-protocol"]["state"] == "open"
    report_doc = op.client.get(f"/api/v1/scans/{scan['id']}/report").json()
    assert report_doc["schema"] == "fleetguard.scan/1" and report_doc["options"]["credentials"] is False

    # The device is switched off: the port list is known, so the next scan resolves.
    r = _post(op, {"targets": [address], "ports": str(port),
                   "options": {"credentials": False, "timeout": 0.5}})
    scan = _wait(op, r.json()["id"])
    assert scan["outcome"]["resolved"] == 2, scan


def test_schedules_run_when_due(
    login_as: Callable[[Role], LoggedIn], scan_jobs: ScanJobs
) -> None:
    op = login_as(Role.OPERATOR)
    address = "127.0.0.64"
    cam = _device(op, "scheduled-cam", address)
    with telnet_device(address) as port:
        r = op.client.post("/api/v1/scan-schedules", headers=op.headers(), json={
            "name": "lab", "targets": [address], "ports": str(port), "interval_s": 3600,
            "options": {"credentials": False, "timeout": 1.0}})
        assert r.status_code == 201, r.text
        schedule = r.json()
        assert op.client.post("/api/v1/scan-schedules", headers=op.headers(), json={
            "name": "lab", "targets": [address], "interval_s": 3600}).status_code == 409
        assert op.client.post("/api/v1/scan-schedules", headers=op.headers(), json={
            "name": "bad", "targets": ["no such host.invalid"], "interval_s": 3600}).status_code == 422

        started = scan_jobs.run_due_scans()
        assert len(started) == 1
        assert scan_jobs.run_due_scans() == []  # not due again for an hour
        scan = _wait(op, started[0])
    assert scan["status"] == "finished" and scan["source"] == "schedule"
    assert scan["schedule_id"] == schedule["id"]
    assert op.client.get(f"/api/v1/devices/{cam}/findings", params={"check": "cleartext-protocol"}).json()["findings"]
    listed = op.client.get("/api/v1/scan-schedules").json()
    assert listed[0]["last_scan_id"] == started[0]
    later = datetime.now(UTC) + timedelta(hours=2)
    assert len(scan_jobs.run_due_scans(now=later)) == 1
    assert scan_jobs.wait_for_scans(60)
    r = op.client.delete(f"/api/v1/scan-schedules/{schedule['id']}", headers=op.headers())
    assert r.status_code == 204
    assert op.client.get("/api/v1/scan-schedules").json() == []


def test_too_many_running_scans_is_429(
    login_as: Callable[[Role], LoggedIn], scan_jobs: ScanJobs
) -> None:
    op = login_as(Role.OPERATOR)
    scan_jobs.max_running = 0
    r = _post(op, {"targets": ["127.0.0.65"], "ports": "9"})
    assert r.status_code == 429 and r.json()["error"]["code"] == "scan_capacity"
    assert int(r.headers["retry-after"]) >= 1
    assert op.client.get("/api/v1/scans").json()["scans"] == []  # nothing recorded
