"""Login latency and authenticated GET throughput of a real `fleetguard serve` over TLS.

Figures, measured in one run:
1. password login (argon2id verify + session + audit entry) p50/p95 over TLS, against the
   floor: one argon2id verification in-process with the same parameters;
2. requests/s of an authenticated GET (`/api/v1/me` with a bearer token: token lookup,
   last-use update, operator read) against a peer: a bare Starlette endpoint on the same
   uvicorn, TLS certificate and machine, with no authentication or database.
The load generator is wrk when installed (`apt-get install wrk`), else a Python client.
"""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

FLEETGUARD = [sys.executable, "-m", "fleetguard.cli"]
LOGINS = 30
LOAD_SECONDS = 10
CONNECTIONS = 16

PEER_APP = r'''
import sys, uvicorn
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route
async def me(request):
    return JSONResponse({"username": "peer", "role": "operator"})
app = Starlette(routes=[Route("/api/v1/me", me)])
uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), ssl_certfile=sys.argv[2],
            ssl_keyfile=sys.argv[3], log_level="warning", access_log=False)
'''


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_up(url: str, ca_bundle: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            httpx.get(url, verify=str(ca_bundle), timeout=2)
            return
        except httpx.HTTPError:
            time.sleep(0.2)
    raise SystemExit(f"{url} did not come up")


def cli(env: dict[str, str], *args: str, stdin: str | None = None) -> str:
    out = subprocess.run([*FLEETGUARD, *args], env=env, input=stdin, capture_output=True,
                         text=True, check=True)
    return out.stdout


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def load_wrk(url: str, token: str | None) -> float:
    header = ["-H", f"Authorization: Bearer {token}"] if token else []
    out = subprocess.run(
        ["wrk", "-t2", f"-c{CONNECTIONS}", f"-d{LOAD_SECONDS}s", *header, url],
        capture_output=True, text=True, check=True,
    ).stdout
    non2xx = [line for line in out.splitlines() if "Non-2xx" in line]
    if non2xx:
        raise SystemExit(f"load run got errors: {non2xx[0]}")
    line = next(line for line in out.splitlines() if line.startswith("Requests/sec:"))
    return float(line.split()[1])


def load_python(url: str, token: str | None, bundle: Path) -> float:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    stop = time.monotonic() + LOAD_SECONDS

    def worker() -> int:
        n = 0
        with httpx.Client(verify=str(bundle), headers=headers) as c:
            while time.monotonic() < stop:
                assert c.get(url).status_code == 200
                n += 1
        return n

    start = time.monotonic()
    with ThreadPoolExecutor(CONNECTIONS) as pool:
        total = sum(pool.map(lambda _: worker(), range(CONNECTIONS)))
    return total / (time.monotonic() - start)


def main() -> None:
    tmp = Path(tempfile.mkdtemp(prefix="fg-bench-"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLEETGUARD_")}
    data = tmp / "data"
    cli(env, "init", "--data-dir", str(data))
    password = "Load-" + secrets.token_urlsafe(16)
    cli(env, "operator", "add", "bench", "--role", "operator", "--data-dir", str(data),
        stdin=password + "\n")
    token = cli(env, "token", "create", "--operator", "bench", "--name", "bench",
                "--data-dir", str(data)).strip()
    cert, key = data / "tls" / "server.crt", data / "tls" / "server.key"
    bundle = data / "ca" / "bundle.pem"
    port, peer_port = free_port(), free_port()
    log = (tmp / "server.log").open("w")
    server = subprocess.Popen(
        [*FLEETGUARD, "serve", "--data-dir", str(data), "--port", str(port),
         "--device-port", "0", "--log-level", "warning"], env=env, stdout=log, stderr=subprocess.STDOUT,
    )
    peer = subprocess.Popen([sys.executable, "-c", PEER_APP, str(peer_port), str(cert), str(key)])
    try:
        base = f"https://127.0.0.1:{port}"
        wait_up(f"{base}/healthz", bundle)
        wait_up(f"https://127.0.0.1:{peer_port}/api/v1/me", bundle)

        from fleetguard.operators.passwords import hash_password, verify_password

        stored = hash_password(password)
        floor = []
        for _ in range(LOGINS):
            t = time.perf_counter()
            verify_password(stored, password)
            floor.append(time.perf_counter() - t)

        latencies = []
        with httpx.Client(verify=str(bundle)) as c:
            for _ in range(LOGINS):
                c.cookies.clear()
                t = time.perf_counter()
                r = c.post(f"{base}/api/v1/auth/login", json={"username": "bench", "password": password})
                latencies.append(time.perf_counter() - t)
                assert r.status_code == 200 and r.json()["step"] == "done", r.text
        p50, p95 = statistics.median(latencies) * 1000, percentile(latencies, 0.95) * 1000
        f50 = statistics.median(floor) * 1000
        print("argon2id parameters: t=3, m=64 MiB, p=4")
        print(f"login over TLS: p50 {p50:.1f} ms, p95 {p95:.1f} ms ({LOGINS} logins)")
        print(f"floor (argon2id verify alone, in-process): p50 {f50:.1f} ms")
        print(f"ratio login/floor (p50): {p50 / f50:.2f}")

        use_wrk = shutil.which("wrk") is not None
        tool = "wrk" if use_wrk else "python httpx threads"
        url = f"{base}/api/v1/me"
        peer_url = f"https://127.0.0.1:{peer_port}/api/v1/me"
        ours = load_wrk(url, token) if use_wrk else load_python(url, token, bundle)
        theirs = load_wrk(peer_url, None) if use_wrk else load_python(peer_url, None, bundle)
        print(f"load generator: {tool}, {CONNECTIONS} connections, {LOAD_SECONDS} s each")
        print(f"authenticated GET /api/v1/me: {ours:.0f} req/s")
        print(f"peer (bare Starlette JSON endpoint, same uvicorn/TLS, no auth/DB): {theirs:.0f} req/s")
        print(f"ratio fleetguard/peer: {ours / theirs:.2f}")
    finally:
        for proc in (server, peer):
            proc.terminate()
            proc.wait(timeout=15)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
