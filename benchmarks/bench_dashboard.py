"""Dashboard page times at fleet scale, on a real `fleetguard serve` over TLS.

With N registered devices (default 100,000; ``BENCH_DEVICES`` to change), spread over
20 sites and every lifecycle state, it loads as a logged-in admin (session cookie):
1. the fleet overview ``/``;
2. a filtered device list page ``/devices?state=quarantined&labels=site=site-07``;
3. the same list's second page (keyset cursor);
and prints p50 and p95 of time to first byte and full load over repeated loads, against
the 300 ms limit of issue 6. Devices are registered through the registry service's CSV
import (the same code as ``POST /api/v1/devices/import``), before the server starts.
"""

from __future__ import annotations

import io
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from fleetguard.core.config import load_settings
from fleetguard.operators import totp
from fleetguard.registry import DeviceState
from fleetguard.registry import service as registry
from fleetguard.registry.service import MAX_CSV_ROWS
from fleetguard.store import open_database

FLEETGUARD = [sys.executable, "-m", "fleetguard.cli"]
DEVICES = int(os.environ.get("BENCH_DEVICES", "100000"))
LOADS = int(os.environ.get("BENCH_LOADS", "40"))
LIMIT_MS = 300.0
STATES = [DeviceState.ACTIVE, DeviceState.QUARANTINED, DeviceState.SUSPENDED]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def populate(data_dir: Path) -> None:
    settings = load_settings(data_dir)
    db = open_database(settings.database_url)
    started = time.perf_counter()
    done = 0
    while done < DEVICES:
        batch = min(MAX_CSV_ROWS, DEVICES - done)
        out = io.StringIO()
        out.write("name,serial,vendor,firmware_version,labels\n")
        for i in range(done, done + batch):
            out.write(f"dev-{i:06d},SN{i:08d},acme,1.{i % 7}.0,site=site-{i % 20:02d};tier=prod\n")
        with db.session() as session:
            registry.import_devices_csv(session, out.getvalue(), actor="bench")
        done += batch
    # a share of the fleet in each state (through the service, audited)
    with db.session() as session:
        page = registry.list_devices(session, limit=500)
        for n, device in enumerate(page.devices):
            registry.set_device_state(session, device.id, DeviceState.ACTIVE, actor="bench")
            if n % 3:
                registry.set_device_state(session, device.id, STATES[n % 3], actor="bench")
    db.dispose()
    print(f"registered {DEVICES} devices in {time.perf_counter() - started:.1f} s")


def login(client: httpx.Client, password: str) -> None:
    r = client.get("/login")
    token = re.search(r'name="login_token" value="([^"]+)"', r.text)
    assert token
    r = client.post("/login", data={"username": "admin", "password": password,
                                    "login_token": token.group(1)})
    challenge = re.search(r'name="challenge" value="([^"]+)"', r.text)
    secret = re.search(r'id="totp-secret">([A-Z2-7]+)<', r.text)
    assert challenge and secret, r.text[:500]
    r = client.post("/login/enroll", data={
        "challenge": challenge.group(1), "login_token": token.group(1),
        "code": totp.code_at_step(secret.group(1), totp.current_step())})
    assert r.status_code == 200 and "__Host-fg_session" in client.cookies, r.text[:500]


def timed(client: httpx.Client, url: str) -> tuple[float, float, int]:
    start = time.perf_counter()
    with client.stream("GET", url) as r:
        first = time.perf_counter()
        body = r.read()
        end = time.perf_counter()
        assert r.status_code == 200, (url, r.status_code)
    return (first - start) * 1000, (end - start) * 1000, len(body)


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = Path(tmp) / "data"
        env = {k: v for k, v in os.environ.items() if not k.startswith("FLEETGUARD_")}
        init = subprocess.run([*FLEETGUARD, "init", "--data-dir", str(data_dir)], env=env,
                              capture_output=True, text=True, check=True)
        password = next(line.removeprefix("admin password: ")
                        for line in init.stdout.splitlines()
                        if line.startswith("admin password: "))
        populate(data_dir)
        port = free_port()
        server = subprocess.Popen(
            [*FLEETGUARD, "serve", "--data-dir", str(data_dir), "--port", str(port),
             "--device-port", str(free_port())],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            base = f"https://127.0.0.1:{port}"
            ca = str(data_dir / "ca" / "bundle.pem")
            deadline = time.monotonic() + 60
            while True:
                try:
                    httpx.get(f"{base}/healthz", verify=ca, timeout=2)
                    break
                except httpx.HTTPError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.2)
            with httpx.Client(base_url=base, verify=ca, timeout=30) as client:
                login(client, password)
                list_url = "/devices?state=quarantined&labels=site%3Dsite-07"
                first = client.get(list_url).text
                nxt = re.search(r'href="(/devices\?[^"]*cursor=[^"]+)" rel="next"', first)
                pages = {"overview /": "/", "filtered list": list_url}
                unfiltered = client.get("/devices").text
                nxt = nxt or re.search(r'href="(/devices\?[^"]*cursor=[^"]+)" rel="next"',
                                       unfiltered)
                if nxt:
                    pages["list, page 2 (cursor)"] = nxt.group(1).replace("&amp;", "&")
                print(f"\n{DEVICES} devices, {LOADS} loads each, limit {LIMIT_MS:.0f} ms "
                      "(server time on loopback TLS, keep-alive)")
                print(f"{'page':24} {'TTFB p50':>9} {'TTFB p95':>9} {'full p50':>9} "
                      f"{'full p95':>9} {'bytes':>7}  p95/limit")
                for name, url in pages.items():
                    for _ in range(3):
                        timed(client, url)  # warm
                    samples = [timed(client, url) for _ in range(LOADS)]
                    ttfb = [s[0] for s in samples]
                    full = [s[1] for s in samples]
                    p95 = pct(full, 95)
                    print(f"{name:24} {pct(ttfb, 50):8.1f}  {pct(ttfb, 95):8.1f}  "
                          f"{pct(full, 50):8.1f}  {p95:8.1f}  {samples[-1][2]:7d}  "
                          f"{p95 / LIMIT_MS:.2f}x {'OK' if p95 < LIMIT_MS else 'OVER'}")
        finally:
            server.terminate()
            server.wait(timeout=15)


if __name__ == "__main__":
    main()
