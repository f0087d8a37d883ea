"""End to end in headless Chromium (Debian's package, driven by Playwright) against a real
`fleetguard serve`: log in with TOTP, overview, a device, revoke its certificate after a
confirmation, watch a state change arrive live, find the revocation in the audit log.

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

from tests.integration.server import FLEETGUARD, RunningServer, start_server
from tests.support import code_for

CHROMIUM = "/usr/bin/chromium"
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
    try:
        console_errors = _journey(server, device_id, gateway_id)
    finally:
        agent.terminate()
        agent.wait(timeout=15)
    assert not console_errors, console_errors
    assert time.monotonic() - started < 60


def _journey(server: RunningServer, device_id: str, gateway_id: str) -> list[str]:
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

        # 2. overview: counts click through to the filtered list
        page.wait_for_selector("text=Fleet overview")
        assert page.inner_text("a.tile.state-active .n") == "2"
        _shot(page, "03-overview")
        page.click("a.tile.state-active")
        page.wait_for_url(f"{base}/devices?state=active")
        assert page.locator("table.devices tbody tr").count() == 2
        # typing in the search box filters in place (htmx), and the URL follows
        page.fill("#q", "gateway")
        expect(page.locator("table.devices tbody tr")).to_have_count(1)
        expect(page).to_have_url(re.compile(r"q=gateway"))
        _shot(page, "04-devices")
        page.fill("#q", "")
        expect(page.locator("table.devices tbody tr")).to_have_count(2)

        # 3. a device; keep a second tab on it to see live updates
        page.click("text=cam-17")
        page.wait_for_url(f"{base}/devices/{device_id}")
        _shot(page, "05-device")
        watcher = context.new_page()
        watcher.on("console", on_console)
        watcher.goto(f"{base}/devices/{device_id}")

        # 4. revoke its certificate, with a confirmation step
        page.click("a:has-text('Revoke…')")
        page.wait_for_selector("text=Confirm: revoke")
        page.select_option("#revocation_reason", "key_compromise")
        _shot(page, "06-confirm-revoke")
        page.click("#confirm-action")
        page.wait_for_url(re.compile(r"done=revoke"))
        assert page.locator("text=key_compromise").count() >= 1
        assert page.locator(".badge:has-text('revoked')").count() == 1
        _shot(page, "07-device-revoked")
        # the other tab re-renders itself from the live event: the certificate shows revoked
        expect(watcher.locator(".badge:has-text('revoked')")).to_have_count(1, timeout=10_000)

        # 5. a state change arrives live in the other tab (server-sent events)
        page.click("a:has-text('Quarantine…')")
        page.fill("#reason", "revoked identity, investigating")
        page.click("#confirm-action")
        page.wait_for_url(re.compile(r"done=quarantine"))
        # (a locator wait: the page's CSP forbids the eval a wait_for_function would need)
        expect(watcher.locator("strong[data-live-state]")).to_have_text("quarantined",
                                                                        timeout=10_000)
        watcher.wait_for_selector("#live-log p")
        expect(watcher.locator("a:has-text('Activate…')")).to_have_count(1)
        _shot(watcher, "08-live-update")

        # 6. the audit log has the revocation, and its chain verifies
        page.goto(f"{base}/audit")
        assert page.locator("td code:has-text('certificate.revoke')").count() == 1
        assert page.locator("#chain-result.ok").count() == 1
        _shot(page, "09-audit")
        page.goto(f"{base}/certificates")
        _shot(page, "10-certificates")
        page.goto(f"{base}/operators")
        _shot(page, "11-operators")

        # keyboard: the skip link is the first stop and leads to the content
        page.goto(f"{base}/")
        page.keyboard.press("Tab")
        assert page.evaluate("document.activeElement.textContent") == "Skip to content"

        # a narrow screen
        narrow = context.new_page()
        narrow.set_viewport_size({"width": 390, "height": 844})
        narrow.on("console", on_console)
        narrow.goto(f"{base}/devices/{device_id}")
        _shot(narrow, "12-device-narrow")
        narrow.goto(f"{base}/")
        _shot(narrow, "13-overview-narrow")
        assert narrow.evaluate("document.documentElement.scrollWidth") <= 390

        # the gateway's stored telemetry, drawn server-side as SVG
        page.goto(f"{base}/devices/{gateway_id}")
        expect(page.locator("svg polyline.line").first).to_be_visible()
        _shot(page, "14-device-telemetry")

        context.close()
        browser.close()
    return console_errors
