"""Dashboard page times at fleet scale, on a real `fleetguard serve` over TLS.

With N registered devices (default 100,000; ``BENCH_DEVICES`` to change), spread over
20 sites and every lifecycle state, one in ten with open findings from scans (one in thirty
with a default credential) and every device known to telemetry (one in twenty offline),
it loads as a logged-in admin (session cookie):
1. the fleet overview ``/`` (states, offline count, findings by severity, weak devices, the
   fleet risk computed live with its stored trend, exact expiring-certificate count);
2. device lists sorted by name: filtered by an open default-credentials finding; by state
   and label; by telemetry offline; and an unfiltered list's second page (keyset cursor);
and prints p50 and p95 of time to first byte and full load over repeated loads, against
the 300 ms limit of issue 6. Devices are registered through the registry's CSV
import (the same code as ``POST /api/v1/devices/import``) and findings through the
findings service's report ingestion (the path of ``fleetguard scan --server``), matched to
devices by the serial number a service discloses; telemetry state rows are written
directly (the ingestion path is benchmarked by bench_ingest.py). All before the server
starts.
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
from sqlalchemy import insert, select

from fleetguard import findings
from fleetguard.core.clock import utcnow
from fleetguard.core.config import load_settings
from fleetguard.install import open_installation_database
from fleetguard.operators import totp
from fleetguard.protocol.scan_report import parse_scan_report
from fleetguard.registry import DeviceState
from fleetguard.registry import service as registry
from fleetguard.registry.csv_exchange import MAX_CSV_ROWS, import_devices_csv
from fleetguard.store import Database
from fleetguard.store.tables import DeviceRow, TelemetryDeviceRow

FLEETGUARD = [sys.executable, "-m", "fleetguard.cli"]
DEVICES = int(os.environ.get("BENCH_DEVICES", "100000"))
LOADS = int(os.environ.get("BENCH_LOADS", "40"))
LIMIT_MS = 300.0
STATES = [DeviceState.ACTIVE, DeviceState.QUARANTINED, DeviceState.SUSPENDED]
HOSTS_PER_REPORT = 5000


def _address(i: int) -> str:
    return f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}"


def _finding(address: str, port: int, check: str, severity: str) -> dict[str, object]:
    return {"host": address, "port": port, "protocol": "tcp", "service": "telnet",
            "check": check, "severity": severity, "title": check, "evidence": "bench",
            "remediation": "fix it", "references": []}


def _report(indices: list[int]) -> dict[str, object]:
    """A fleetguard.scan/1 report: each host discloses its serial (UPnP) and has telnet
    open (cleartext); one in three also logs in with a default credential, one in seven
    has a self-signed certificate."""
    hosts, found = [], []
    for i in indices:
        address = _address(i)
        hosts.append({
            "address": address, "hostname": None, "status": "up",
            "services": [{"port": 23, "protocol": "tcp", "service": "telnet", "tls": False},
                         {"port": 1900, "protocol": "udp", "service": "upnp", "tls": False,
                          "extra": {"serialNumber": f"SN{i:08d}"}}],
            "ports": [{"port": 23, "protocol": "tcp", "state": "open"}],
            "counts": {"open": 1, "closed": 0, "filtered": 0, "open|filtered": 0},
        })
        found.append(_finding(address, 23, "cleartext-protocol", "high"))
        if i % 30 == 0:
            found.append(_finding(address, 23, "default-credentials", "critical"))
        if i % 70 == 0:
            found.append(_finding(address, 443, "tls-self-signed-certificate", "low"))
    now = utcnow().isoformat()
    return {"schema": "fleetguard.scan/1", "targets": [h["address"] for h in hosts],
            "started": now, "finished": now,
            "options": {"ports": 2, "credentials": True}, "hosts": hosts, "findings": found,
            "notes": []}


def seed_findings(db: Database) -> int:
    weak = list(range(0, DEVICES, 10))
    for start in range(0, len(weak), HOSTS_PER_REPORT):
        document = parse_scan_report(_report(weak[start:start + HOSTS_PER_REPORT]))
        with db.session() as session:
            findings.ingest_report(session, document, actor="bench")
    return len(weak)


def seed_telemetry(db: Database) -> None:
    now_ms = int(utcnow().timestamp() * 1000)
    with db.session() as session:
        ids = list(session.execute(select(DeviceRow.id).order_by(DeviceRow.id)).scalars())
        for start in range(0, len(ids), 5000):
            session.execute(insert(TelemetryDeviceRow), [
                {"device_id": d, "interval_ms": 60_000, "online": (start + n) % 20 != 0,
                 # the offline ones fell silent an hour ago (the server's sweep agrees)
                 "last_seen_ms": now_ms - (3_600_000 if (start + n) % 20 == 0 else 0),
                 "online_changed_ms": now_ms,
                 "counters": "{}", "listening": "[]", "connections": "[]",
                 "new_executables": "[]"}
                for n, d in enumerate(ids[start:start + 5000])
            ])


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def populate(data_dir: Path) -> None:
    settings = load_settings(data_dir)
    # keyed by the installation's master key: the imports and state changes are audited
    db = open_installation_database(settings, migrate=False)
    started = time.perf_counter()
    done = 0
    while done < DEVICES:
        batch = min(MAX_CSV_ROWS, DEVICES - done)
        out = io.StringIO()
        out.write("name,serial,vendor,firmware_version,labels\n")
        for i in range(done, done + batch):
            out.write(f"dev-{i:06d},SN{i:08d},acme,1.{i % 7}.0,site=site-{i % 20:02d};tier=prod\n")
        with db.session() as session:
            import_devices_csv(session, out.getvalue(), actor="bench")
        done += batch
    # a share of the fleet in each state (through the service, audited)
    with db.session() as session:
        page = registry.list_devices(session, limit=500)
        for n, device in enumerate(page.devices):
            registry.set_device_state(session, device.id, DeviceState.ACTIVE, actor="bench")
            if n % 3:
                registry.set_device_state(session, device.id, STATES[n % 3], actor="bench")
    print(f"registered {DEVICES} devices in {time.perf_counter() - started:.1f} s")
    started = time.perf_counter()
    weak = seed_findings(db)
    with db.read_session() as session:
        risk = findings.fleet_risk(session)
        opened = sum(findings.count_findings_by_severity(session).values())
    print(f"ingested scans of {weak} devices ({opened} open findings, fleet risk "
          f"{risk.score}) in {time.perf_counter() - started:.1f} s")
    seed_telemetry(db)
    db.dispose()


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
                pages = {
                    "overview /": "/",
                    "default creds, by name": "/devices?check=default-credentials&sort=name",
                    "state+label, by name": "/devices?state=quarantined&labels=site%3Dsite-07"
                                            "&sort=name",
                    "offline, by name desc": "/devices?online=offline&sort=-name",
                }
                for url in list(pages.values())[1:]:
                    body = client.get(url).text
                    shown = body.count('<td><a href="/devices/')
                    assert shown, (url, body[:500])
                unfiltered = client.get("/devices?sort=name").text
                nxt = re.search(r'href="(/devices\?[^"]*cursor=[^"]+)" rel="next"', unfiltered)
                assert nxt
                pages["all, page 2 (cursor)"] = nxt.group(1).replace("&amp;", "&")
                print(f"\n{DEVICES} devices, {LOADS} loads each, limit {LIMIT_MS:.0f} ms "
                      "(server time on loopback TLS, keep-alive)")
                print(f"{'page':26} {'TTFB p50':>9} {'TTFB p95':>9} {'full p50':>9} "
                      f"{'full p95':>9} {'bytes':>7}  p95/limit")
                for name, url in pages.items():
                    for _ in range(3):
                        timed(client, url)  # warm
                    samples = [timed(client, url) for _ in range(LOADS)]
                    ttfb = [s[0] for s in samples]
                    full = [s[1] for s in samples]
                    p95 = pct(full, 95)
                    print(f"{name:26} {pct(ttfb, 50):8.1f}  {pct(ttfb, 95):8.1f}  "
                          f"{pct(full, 50):8.1f}  {p95:8.1f}  {samples[-1][2]:7d}  "
                          f"{p95 / LIMIT_MS:.2f}x {'OK' if p95 < LIMIT_MS else 'OVER'}")
        finally:
            server.terminate()
            server.wait(timeout=15)


if __name__ == "__main__":
    main()
