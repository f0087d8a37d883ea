"""End to end in headless Chromium (Debian's package, driven by Playwright) against a real
`fleetguard serve`: log in with TOTP; scan a loopback camera that still has a factory
default telnet login from the Scans page and watch it finish live; from the overview's
"default credentials" figure find that camera, open it, revoke its certificate after a
confirmation, watch its state change arrive live and find the revocation in the audit log;
an auditor sees no revoke action and the API refuses it the same.

Screenshots of the main pages go to test-artifacts/dashboard/ (git-ignored).
"""

from __future__ import annotations

import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from fleetguard.scan.models import Service
from tests.integration.server import FLEETGUARD, RunningServer, start_server
from tests.scan.lab import Lab, default_cred, telnet_login
from tests.support import code_for, strong_password

CHROMIUM = "/usr/bin/chromium"
CAMERA_ADDRESS = "127.0.0.77"  # the weak camera's telnet, served by this test
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "dashboard"

pytestmark = pytest.mark.process

try:
    from playwright.sync_api import Page, expect, sync_playwright
except ImportError:  # pragma: no cover - depends on the machine
    sync_playwright = None  # type: ignore[assignment]

if sync_playwright is None:
    pytest.skip("the Python package 'playwright' is not installed (pip install playwright)",
                allow_module_level=True)
if not Path(CHROMIUM).exists():
    pytest.skip(f"Chromium is not installed at {CHROMIUM} (apt-get install chromium)",
                allow_module_level=True)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    running = start_server(tmp_path_factory.mktemp("dashboard"))
    yield running
    running.stop()


def _ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout.strip()


def _enrolled_device(server: RunningServer, tmp: Path, name: str) -> str:
    device_id = _ok(server.cli("device", "add", name, "--serial", f"SN-{name}",
                               "--label", "site=berlin"))
    token = _ok(server.cli("device", "token", device_id))
    _ok(subprocess.run(
        [*FLEETGUARD, "agent", "enroll", "--server", f"https://127.0.0.1:{server.device_port}",
         "--token", token, "--state-dir", str(tmp / name)],
        env=server.env, capture_output=True, text=True, timeout=60, check=False,
    ))
    return device_id


def _shot(page: Page, name: str) -> None:
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def test_operator_journey_in_chromium(server: RunningServer, tmp_path: Path) -> None:
    started = time.monotonic()
    device_id = _enrolled_device(server, tmp_path, "cam-17")
    gateway_id = _enrolled_device(server, tmp_path, "gateway-2")
    # the real agent reports this machine's telemetry every second while the test runs
    agent = subprocess.Popen(
        [*FLEETGUARD, "agent", "run", "--state-dir", str(tmp_path / "gateway-2"),
         "--interval", "1", "--log-level", "warning"],
        env=server.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    auditor_password = strong_password()
    _ok(server.cli("operator", "add", "auditor-1", "--role", "auditor",
                   stdin=auditor_password + "\n"))
    # a camera that still logs in with a factory default (from the shipped list)
    lab = Lab()
    telnet_port = lab.tcp(CAMERA_ADDRESS, telnet_login(default_cred(Service.TELNET)))
    try:
        console_errors = _journey(server, device_id, gateway_id, telnet_port, auditor_password)
    finally:
        lab.close()
        agent.terminate()
        agent.wait(timeout=15)
    assert not console_errors, console_errors
    assert time.monotonic() - started < 90


def _log_in(page: Page, base: str, username: str, password: str) -> None:
    """Password, then a TOTP code; an operator without a second factor enrolls one."""
    page.goto(f"{base}/login")
    page.fill("#username", username)
    page.fill("#password", password)
    page.click("button[type=submit]")
    page.wait_for_selector("#code, h1:has-text('Fleet overview')")
    if page.locator("#totp-secret").count():
        page.fill("#code", code_for(page.inner_text("#totp-secret").strip()))
        page.click("button[type=submit]")
        page.click("text=Continue to the dashboard")
    page.wait_for_url(f"{base}/")


def _journey(server: RunningServer, device_id: str, gateway_id: str, telnet_port: int,
             auditor_password: str) -> list[str]:
    console_errors: list[str] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS,
                                     headless=True)
        # the server's certificate comes from the installation's own CA
        context = browser.new_context(ignore_https_errors=True,
                                      viewport={"width": 1280, "height": 800})
        page = context.new_page()

        def on_console(msg: Any) -> None:
            if msg.type == "error":
                console_errors.append(msg.text)

        page.on("console", on_console)
        page.on("pageerror", lambda exc: console_errors.append(str(exc)))
        base = server.base_url

        # 1. anonymous -> login; the first admin enrolls TOTP from the QR page
        page.goto(f"{base}/devices")
        assert re.search(r"/login\?next=/devices$", page.url)
        _shot(page, "01-login")
        page.fill("#username", "admin")
        page.fill("#password", server.admin_password)
        page.click("button[type=submit]")
        page.wait_for_selector("img[alt^='QR code']")
        _shot(page, "02-mfa-enrollment")
        secret = page.inner_text("#totp-secret").strip()
        page.fill("#code", code_for(secret))
        page.click("button[type=submit]")
        page.wait_for_selector("ul.codes li")
        page.click("text=Continue to the dashboard")
        page.wait_for_url(f"{base}/devices")

        # log out, then log in again with password and a TOTP code
        page.click("button:has-text('Log out')")
        page.wait_for_url(re.compile(r"/login"))
        page.fill("#username", "admin")
        page.fill("#password", server.admin_password)
        page.click("button[type=submit]")
        page.wait_for_selector("form[action='/login/mfa']")
        page.fill("#code", code_for(secret, 1))  # the enrollment used the current step
        page.click("button[type=submit]")
        page.wait_for_url(f"{base}/")

        # the camera answers at its own address (the API's device update, as the CLI uses it)
        csrf = next(c["value"] for c in context.cookies() if c["name"] == "__Host-fg_csrf")
        r = page.request.patch(f"{base}/api/v1/devices/{device_id}",
                               data={"addresses": [CAMERA_ADDRESS]},
                               headers={"X-CSRF-Token": csrf})
        assert r.status == 200, r.text()

        # 2. a scan of the camera from the Scans page, with its safety options; its page
        # follows the progress live and shows the results when it ends
        page.click("nav >> text=Scans")
        page.fill("#targets", CAMERA_ADDRESS)
        page.fill("#ports", str(telnet_port))
        page.fill("#opt-timeout", "1")
        page.fill("#opt-login_delay", "0.05")
        assert page.is_checked("#opt-credentials")
        _shot(page, "03-scans")
        page.click("#start-scan")
        page.wait_for_url(re.compile(r"/scans/[0-9a-f-]{36}$"))
        expect(page.locator("#scan-status")).to_have_text("finished", timeout=30_000)
        expect(page.locator("#by-host")).to_contain_text(CAMERA_ADDRESS)
        page.click("text=By check")
        page.click("#by-check >> text=default-credentials")
        expect(page.locator(".findings summary").first).to_contain_text("default-credentials")
        _shot(page, "04-scan-results")
        page.goto(f"{base}/scans")
        expect(page.locator("td[data-label=Status]").first).to_contain_text("finished")

        # 3. overview: every figure clicks through to the filtered list behind it; the
        # "default credentials" figure leads to the camera
        page.click("a.brand")
        page.wait_for_selector("text=Fleet overview")
        assert page.inner_text("a.tile.state-active .n") == "2"
        assert page.inner_text("#weak-default-credentials .n") == "1"
        assert float(page.inner_text("#risk-score")) > 0
        _shot(page, "05-overview")
        # by keyboard: Tab reaches the figure, Enter opens the list behind it
        for _ in range(80):
            page.keyboard.press("Tab")
            if page.evaluate("document.activeElement.id") == "weak-default-credentials":
                break
        assert page.evaluate("document.activeElement.id") == "weak-default-credentials"
        page.keyboard.press("Enter")
        page.wait_for_url(f"{base}/devices?check=default-credentials")
        expect(page.locator("table.devices tbody tr")).to_have_count(1)
        expect(page.locator("table.devices tbody")).to_contain_text("cam-17")
        _shot(page, "06-devices-default-credentials")
        page.click("table.devices >> text=cam-17")
        page.wait_for_url(f"{base}/devices/{device_id}")
        expect(page.locator(".open-findings")).to_contain_text("default-credentials")
        page.locator(".open-findings summary:has-text('default-credentials')").click()
        expect(page.locator(".open-findings .evidence").first).to_be_visible()
        _shot(page, "07-device-with-findings")

        # the device list also filters and sorts in place
        page.goto(f"{base}/")
        page.click("a.tile.state-active")
        page.wait_for_url(f"{base}/devices?state=active")
        assert page.locator("table.devices tbody tr").count() == 2
        # typing in the search box filters in place (htmx), and the URL follows
        page.fill("#q", "gateway")
        expect(page.locator("table.devices tbody tr")).to_have_count(1)
        expect(page).to_have_url(re.compile(r"q=gateway"))
        page.fill("#q", "")
        expect(page.locator("table.devices tbody tr")).to_have_count(2)
        page.click("th >> text=Name")  # already by name: now descending
        expect(page.locator("table.devices tbody tr").first).to_contain_text("gateway-2")
        _shot(page, "08-devices")

        # 4. the camera; keep a second tab on it to see live updates
        page.click("table.devices >> text=cam-17")
        page.wait_for_url(f"{base}/devices/{device_id}")
        watcher = context.new_page()
        watcher.on("console", on_console)
        watcher.goto(f"{base}/devices/{device_id}")

        # 5. revoke its certificate, with a confirmation step
        page.click("a:has-text('Revoke…')")
        page.wait_for_selector("text=Confirm: revoke")
        page.select_option("#revocation_reason", "key_compromise")
        _shot(page, "09-confirm-revoke")
        page.click("#confirm-action")
        page.wait_for_url(re.compile(r"done=revoke"))
        assert page.locator("text=key_compromise").count() >= 1
        assert page.locator(".badge:has-text('revoked')").count() == 1
        _shot(page, "10-device-revoked")
        # the other tab re-renders itself from the live event: the certificate shows revoked
        expect(watcher.locator(".badge:has-text('revoked')")).to_have_count(1, timeout=10_000)

        # 6. a state change arrives live in the other tab (server-sent events)
        page.click("a:has-text('Quarantine…')")
        page.fill("#reason", "revoked identity, investigating")
        page.click("#confirm-action")
        page.wait_for_url(re.compile(r"done=quarantine"))
        # (a locator wait: the page's CSP forbids the eval a wait_for_function would need)
        expect(watcher.locator("strong[data-live-state]")).to_have_text("quarantined",
                                                                        timeout=10_000)
        watcher.wait_for_selector("#live-log p")
        expect(watcher.locator("a:has-text('Activate…')")).to_have_count(1)
        _shot(watcher, "11-live-update")

        # 7. the audit log has the revocation, and its chain verifies
        page.goto(f"{base}/audit")
        assert page.locator("td code:has-text('certificate.revoke')").count() == 1
        assert page.locator("#chain-result.ok").count() == 1
        _shot(page, "12-audit")
        page.goto(f"{base}/certificates")
        _shot(page, "13-certificates")
        page.goto(f"{base}/operators")
        _shot(page, "14-operators")
        page.goto(f"{base}/findings")
        _shot(page, "15-findings")

        # 8. an auditor sees the camera but no action on it, and the API refuses one too
        auditor_context = browser.new_context(ignore_https_errors=True,
                                              viewport={"width": 1280, "height": 800})
        auditor = auditor_context.new_page()
        auditor.on("console", on_console)
        _log_in(auditor, base, "auditor-1", auditor_password)
        auditor.goto(f"{base}/devices/{gateway_id}")
        expect(auditor.locator("h1")).to_contain_text("gateway-2")
        assert auditor.locator("text=Revoke…").count() == 0
        assert auditor.locator("a[href*='/confirm/']").count() == 0
        assert auditor.locator("#start-scan").count() == 0
        serial = auditor.locator("td[data-label=Serial]").first.inner_text().strip()
        auditor_csrf = next(c["value"] for c in auditor_context.cookies()
                            if c["name"] == "__Host-fg_csrf")
        refused = auditor.request.post(f"{base}/api/v1/certificates/{serial}/revoke",
                                       data={"reason": "key_compromise"},
                                       headers={"X-CSRF-Token": auditor_csrf})
        assert refused.status == 403, refused.text()
        refused = auditor.request.post(f"{base}/devices/{gateway_id}/actions/revoke",
                                       form={"csrf_token": auditor_csrf, "serial": serial})
        assert refused.status == 403
        auditor.goto(f"{base}/devices/{gateway_id}")
        expect(auditor.locator(".badge:has-text('revoked')")).to_have_count(0)
        _shot(auditor, "16-device-as-auditor")
        auditor_context.close()

        # keyboard: the skip link is the first stop and leads to the content
        page.goto(f"{base}/")
        page.keyboard.press("Tab")
        assert page.evaluate("document.activeElement.textContent") == "Skip to content"

        # a narrow screen
        narrow = context.new_page()
        narrow.set_viewport_size({"width": 390, "height": 844})
        narrow.on("console", on_console)
        for url, name in ((f"/devices/{device_id}", "17-device-narrow"),
                          ("/", "18-overview-narrow"), ("/devices", "19-devices-narrow"),
                          ("/scans", "20-scans-narrow")):
            narrow.goto(f"{base}{url}")
            _shot(narrow, name)
            assert narrow.evaluate("document.documentElement.scrollWidth") <= 390, url

        # the gateway's stored telemetry, drawn server-side as SVG
        page.goto(f"{base}/devices/{gateway_id}")
        # (a line where there are two points or more, a dot where one)
        expect(page.locator("svg .series").first).to_be_visible()
        _shot(page, "21-device-telemetry")

        context.close()
        browser.close()
    return console_errors
