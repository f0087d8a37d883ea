"""The SOC analyst's screens in headless Chromium (Debian's, driven by Playwright) against a
real `fleetguard serve`: a device enrolled for real reports over HTTPS with its own
certificate; the analyst watches the alarm queue, the device's port scan arrives as an
alarm without a reload, the analyst opens it, acknowledges it after a confirmation, and
finds it on the device's timeline. Screenshots at 1280 and 390 px wide go to
test-artifacts/dashboard/ (git-ignored).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from fleetguard.core.clock import utcnow
from fleetguard.protocol import to_millis
from tests.dashboard.test_browser import ARTIFACTS, CHROMIUM, CHROMIUM_ARGS, _log_in, _shot
from tests.detect.support import MINUTE_MS, listening, net, report
from tests.integration.server import RunningServer, start_server
from tests.integration.test_detection import SCAN_FAILURES_PER_S, _enroll, _send, _token
from tests.support import strong_password

pytestmark = pytest.mark.process
sync_api = pytest.importorskip("playwright.sync_api")
expect, sync_playwright = sync_api.expect, sync_api.sync_playwright
Page = Any

ANALYST = "analyst"


@pytest.fixture
def server(tmp_path: Path) -> Iterator[RunningServer]:
    running = start_server(tmp_path)
    yield running
    running.stop()


def test_an_analyst_sees_a_scan_arrive_live_and_acknowledges_it(server: RunningServer) -> None:
    token = _token(server)
    identity = _enroll(server, token)
    password = strong_password()
    added = server.cli("operator", "add", ANALYST, "--role", "operator", stdin=password + "\n")
    assert added.returncode == 0, added.stderr
    now = to_millis(utcnow())
    sshd = [listening(22)]
    _send(server, identity, report(now - MINUTE_MS, seq=1, counters=net(tcp_attempt_fails=3),
                                   listeners=sshd))
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    console_errors: list[str] = []

    def on_console(msg: Any) -> None:
        if msg.type == "error":
            console_errors.append(msg.text)

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS,
                                     headless=True)
        context = browser.new_context(ignore_https_errors=True,
                                      viewport={"width": 1280, "height": 800})
        page = context.new_page()
        page.on("console", on_console)
        page.on("pageerror", lambda exc: console_errors.append(str(exc)))
        base = server.base_url
        _log_in(page, base, ANALYST, password)

        # the queue, from the navigation: nothing waits yet
        page.click("nav >> text=Alarms")
        page.wait_for_url(f"{base}/alarms")
        expect(page.locator("#alarm-list")).to_contain_text("Nothing waits for triage")

        # the device's next report is a port scan: the alarm appears without a reload
        scanned = 3 + SCAN_FAILURES_PER_S * 60
        _send(server, identity, report(now, seq=2, counters=net(tcp_attempt_fails=scanned),
                                       listeners=sshd))
        row = page.locator("#alarm-list tbody tr", has_text="scan.refused-connections")
        expect(row).to_have_count(1, timeout=30_000)
        expect(row).to_contain_text("high")
        expect(row).to_contain_text("scanning")
        expect(row).to_contain_text("cam-scanning")
        page.reload()  # the navigation's badge counts it too
        expect(page.locator("#nav-alarm-count")).to_contain_text("1", timeout=10_000)
        _shot(page, "alarms-01-queue-1280")

        # the alarm explains itself; acknowledge it after a confirmation
        row.locator("a.alarm-link").click()
        page.wait_for_url(re.compile(r"/alarms/\d+$"))
        alarm_url = page.url
        expect(page.locator("h1")).to_contain_text("scanning on cam-scanning")
        expect(page.locator("#alarm-observed")).to_have_text(re.compile(r"^15[45]"))
        expect(page.locator(".chart svg").first).to_be_visible()
        _shot(page, "alarms-02-alarm-1280")
        page.click("#action-acknowledge")
        page.wait_for_selector("text=Confirm: acknowledge")
        _shot(page, "alarms-03-confirm-1280")
        page.click("#confirm-action")
        page.wait_for_url(re.compile(r"done=acknowledge"))
        expect(page.locator("#alarm-state")).to_have_text("acknowledged")
        expect(page.locator("#action-acknowledge")).to_have_count(0)

        # the device's page: the open alarm, and the timeline with the acknowledgement
        page.click("h1 >> text=cam-scanning")
        expect(page.locator("#alarms")).to_contain_text("Alarms: 1 open")
        timeline = page.locator("#device-timeline li")
        expect(timeline.first).to_contain_text("Alarm acknowledged")
        expect(page.locator("#device-timeline")).to_contain_text("reports received")
        _shot(page, "alarms-04-device-timeline-1280")
        page.goto(f"{base}/")
        expect(page.locator("#alarms-high .n")).to_have_text("1")
        _shot(page, "alarms-05-overview-1280")

        # the same screens on a phone
        phone = browser.new_context(ignore_https_errors=True, storage_state=context.storage_state(),
                                    viewport={"width": 390, "height": 844})
        small = phone.new_page()
        small.on("console", on_console)
        small.on("pageerror", lambda exc: console_errors.append(str(exc)))
        small.goto(f"{base}/alarms?state=open")
        expect(small.locator("#alarm-list")).to_contain_text("scan.refused-connections")
        _assert_no_horizontal_scroll(small)
        _shot(small, "alarms-06-queue-390")
        small.goto(alarm_url)
        _assert_no_horizontal_scroll(small)
        _shot(small, "alarms-07-alarm-390")
        small.goto(f"{base}/devices/{identity.device_id}")
        _shot(small, "alarms-08-device-timeline-390")
        phone.close()
        context.close()
        browser.close()
    assert not console_errors, console_errors


def _assert_no_horizontal_scroll(page: Page) -> None:
    """Nothing on the page is wider than the phone's screen."""
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
