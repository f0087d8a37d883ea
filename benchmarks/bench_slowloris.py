"""Real work while a flood of idle and trickling connections is held on both listeners.

A real `fleetguard serve` on loopback. Measured unloaded, then while --hold connections
(default 5,000) are held by a separate process, spread over the operator API (30 %) and the
device endpoint (70 %):
1. an operator login, the real flow: TLS, password (argon2id), then a TOTP code;
2. a device enrollment: TLS to the mutual-TLS endpoint, a one-time token and a CSR, the
   certificate issued and committed.
Printed: both latencies (median of --samples) unloaded and loaded and their ratio; how many
of the held connections the server kept and dropped, per kind and listener, at the loaded
measurement and once its deadlines (10 s) have passed; the server's RSS throughout.

The flood holds five kinds in equal parts, from 127.0.1.x (operator API, 64 per address) and
127.0.2.x (device endpoint, 512 per address), so that no address goes over its share:
a body at 600 B/s (above the 500 B/s floor: kept while the listener has room), a body at
10 B/s, headers at 1 B/s, silence after TLS, and silence with no TLS at all.

    python benchmarks/bench_slowloris.py [--hold 5000] [--samples 5]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import multiprocessing
import multiprocessing.connection
import os
import resource
import shutil
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx

FLEETGUARD = [sys.executable, "-m", "fleetguard.cli"]
KINDS = ("body at 600 B/s", "body at 10 B/s", "headers at 1 B/s", "silent after TLS",
         "silent TCP, no TLS")
#: Opened first to last: the longest-lived first, so that most are held at the measurement.
LISTENERS = {"operator API": (0.3, 64, "127.0.1"), "device endpoint": (0.7, 512, "127.0.2")}
BODY_BYTES = 60_000
SETTLE_S = 25.0  # after the flood is open: every 10 s deadline has struck by then


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cli(env: dict[str, str], *args: str, stdin: str | None = None) -> str:
    return subprocess.run([*FLEETGUARD, *args], env=env, input=stdin, capture_output=True,
                          text=True, check=True).stdout


def raise_open_files(needed: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < needed:
        raise SystemExit(f"needs {needed} open files; the hard limit is {hard}")
    if soft != resource.RLIM_INFINITY and soft < needed:
        resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))


# The flood, in its own process ---------------------------------------------------------------

class Flood:
    def __init__(self, ports: dict[str, int], paths: dict[str, bytes], bundle: str) -> None:
        self.ports, self.paths = ports, paths
        self.tls = ssl.create_default_context(cafile=bundle)
        self.opened: Counter[tuple[str, str]] = Counter()  # connected (and TLS done)
        self.open: Counter[tuple[str, str]] = Counter()  # still open now
        self.failed: Counter[tuple[str, str]] = Counter()  # refused before TLS completed
        self.dropped: Counter[tuple[str, str]] = Counter()  # closed by the server later
        self.held_s: dict[tuple[str, str], list[float]] = {}
        self.tasks: set[asyncio.Task[None]] = set()

    async def hold(self, listener: str, kind: str, source: str, gate: asyncio.Semaphore) -> None:
        key = (listener, kind)
        use_tls = kind != "silent TCP, no TLS"
        async with gate:
            try:
                reader, writer = await asyncio.open_connection(
                    "127.0.0.1", self.ports[listener], local_addr=(source, 0),
                    ssl=self.tls if use_tls else None,
                    server_hostname="127.0.0.1" if use_tls else None,
                    ssl_handshake_timeout=60 if use_tls else None,
                )
            except (OSError, ssl.SSLError, TimeoutError):
                self.failed[key] += 1
                return
        self.opened[key] += 1
        self.open[key] += 1
        start = time.monotonic()
        head = b"POST " + self.paths[listener] + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        body_head = head + (b"Content-Type: application/json\r\n"
                            b"Content-Length: %d\r\n\r\n{" % BODY_BYTES)
        first, trickle, every = {
            "body at 600 B/s": (body_head, b" " * 600, 1.0),
            "body at 10 B/s": (body_head, b" " * 10, 1.0),
            "headers at 1 B/s": (head + b"X-Slow: ", b"a", 1.0),
            "silent after TLS": (b"", b"", 1.0),
            "silent TCP, no TLS": (b"", b"", 1.0),
        }[kind]
        try:
            if first:
                writer.write(first)
            while True:
                try:
                    data = await asyncio.wait_for(reader.read(65536), every)
                except TimeoutError:
                    if trickle:
                        writer.write(trickle)
                    continue
                if not data:
                    break
        except (OSError, ssl.SSLError):
            pass
        except asyncio.CancelledError:
            writer.transport.abort()
            raise
        self.open[key] -= 1
        self.dropped[key] += 1
        self.held_s.setdefault(key, []).append(time.monotonic() - start)
        writer.transport.abort()

    def snapshot(self) -> dict[str, Any]:
        def by_key(counter: Counter[tuple[str, str]]) -> dict[str, int]:
            return {f"{listener}|{kind}": n for (listener, kind), n in counter.items()}
        return {"opened": by_key(self.opened), "open": by_key(self.open),
                "failed": by_key(self.failed), "dropped": by_key(self.dropped),
                "held_median_s": {f"{k[0]}|{k[1]}": statistics.median(v)
                                  for k, v in self.held_s.items() if v}}

    async def run(self, hold: int, pipe: multiprocessing.connection.Connection) -> None:
        gate = asyncio.Semaphore(200)
        loop = asyncio.get_running_loop()
        plan = []
        for listener, (share, per_address, prefix) in LISTENERS.items():
            count = round(hold * share)
            for i in range(count):
                kind = KINDS[i * len(KINDS) // count]
                plan.append((KINDS.index(kind), listener, kind,
                             f"{prefix}.{i // per_address + 1}"))
        plan.sort(key=lambda item: item[0])  # longest-lived kinds first, on both listeners
        for _, listener, kind, source in plan:
            task = loop.create_task(self.hold(listener, kind, source, gate))
            self.tasks.add(task)
        # Every connection attempted (TLS included) before saying so.
        while sum(self.opened.values()) + sum(self.failed.values()) < len(plan):
            await asyncio.sleep(0.05)
        pipe.send(("opened", self.snapshot()))
        while True:
            while not pipe.poll():
                await asyncio.sleep(0.05)
            if pipe.recv() == "stop":
                break
            pipe.send(("snapshot", self.snapshot()))
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)


def flood_main(hold: int, ports: dict[str, int], paths: dict[str, bytes], bundle: str,
               pipe: multiprocessing.connection.Connection) -> None:
    flood = Flood(ports, paths, bundle)
    try:
        import uvloop
        runner = asyncio.Runner(loop_factory=uvloop.new_event_loop)
    except ImportError:
        runner = asyncio.Runner()
    with runner:
        runner.run(flood.run(hold, pipe))


# The measured work ---------------------------------------------------------------------------

def timed_login(base: str, tls: ssl.SSLContext, username: str, password: str,
                secret: str) -> float:
    from fleetguard.operators import totp

    start = time.perf_counter()
    with httpx.Client(base_url=base, verify=tls, timeout=60) as client:
        r = client.post("/api/v1/auth/login", json={"username": username, "password": password})
        if r.status_code != 200 or r.json().get("step") != "mfa_required":
            raise SystemExit(f"login failed: {r.status_code} {r.text}")
        code = totp.code_at_step(secret, totp.current_step() + 1)  # newer than enrollment's
        r = client.post("/api/v1/auth/mfa", json={"challenge": r.json()["challenge"], "code": code})
        if r.status_code != 200 or r.json().get("step") != "done":
            raise SystemExit(f"second factor failed: {r.status_code} {r.text}")
    return time.perf_counter() - start


def timed_enrollment(url: str, tls: ssl.SSLContext, token: str, csr: str) -> float:
    start = time.perf_counter()
    with httpx.Client(verify=tls, timeout=60) as client:
        r = client.post(url, json={"token": token, "csr": csr})
    if r.status_code != 201:
        raise SystemExit(f"enrollment failed: {r.status_code} {r.text}")
    return time.perf_counter() - start


def enroll_mfa(base: str, tls: ssl.SSLContext, username: str, password: str) -> str:
    from urllib.parse import parse_qs, urlparse

    from fleetguard.operators import totp

    with httpx.Client(base_url=base, verify=tls, timeout=60) as client:
        r = client.post("/api/v1/auth/login", json={"username": username, "password": password})
        challenge = r.json()["challenge"]
        uri = client.post("/api/v1/auth/mfa/enroll", json={"challenge": challenge}).json()
        secret: str = parse_qs(urlparse(uri["otpauth_uri"]).query)["secret"][0]
        r = client.post("/api/v1/auth/mfa/enroll/confirm", json={
            "challenge": challenge, "code": totp.code_at_step(secret, totp.current_step())})
        if r.status_code != 200:
            raise SystemExit(f"MFA enrollment failed: {r.status_code} {r.text}")
    return secret


def make_csr() -> str:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    csr = (x509.CertificateSigningRequestBuilder()
           .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "bench")]))
           .sign(key, hashes.SHA256()))
    return csr.public_bytes(serialization.Encoding.PEM).decode()


def rss_mb(pid: int) -> str:
    """Resident memory and open descriptors of the server process."""
    import psutil

    process = psutil.Process(pid)
    return f"{process.memory_info().rss / 2**20:.0f} MB ({process.num_fds()} open files)"


def print_flood(title: str, snap: dict[str, Any], hold: int) -> None:
    print(f"  {title}:")
    kept = sum(snap["open"].values())
    dropped = sum(snap["dropped"].values())
    failed = sum(snap["failed"].values())
    print(f"    of {hold} held: kept {kept}, dropped {dropped} by the server after opening, "
          f"refused {failed} before TLS completed")
    for listener in LISTENERS:
        for kind in KINDS:
            key = f"{listener}|{kind}"
            held = snap["held_median_s"].get(key)
            print(f"    {listener:<15} {kind:<19} kept {snap['open'].get(key, 0):>5}  "
                  f"dropped {snap['dropped'].get(key, 0):>5}  refused "
                  f"{snap['failed'].get(key, 0):>4}"
                  + (f"  (dropped after {held:.1f} s, median)" if held is not None else ""))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--hold", type=int, default=5000)
    parser.add_argument("--samples", type=int, default=5)
    args = parser.parse_args()
    raise_open_files(args.hold * 2 + 4096)

    tmp = Path(tempfile.mkdtemp(prefix="fg-slowloris-"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLEETGUARD_")}
    data = tmp / "data"
    server = None
    try:
        cli(env, "init", "--data-dir", str(data))
        password = "Bench-" + os.urandom(12).hex()
        operators = [f"bench{i}" for i in range(2 * args.samples)]
        for name in operators:
            cli(env, "operator", "add", name, "--role", "admin", "--data-dir", str(data),
                stdin=password + "\n")
        tokens = []
        for i in range(2 * args.samples):
            device = cli(env, "device", "add", f"bench-{i}", "--data-dir", str(data)).strip()
            tokens.append(cli(env, "device", "token", device, "--data-dir", str(data)).strip())
        csrs = [make_csr() for _ in tokens]

        port, device_port = free_port(), free_port()
        log_path = tmp / "server.log"
        with log_path.open("w") as log:
            server = subprocess.Popen(
                [*FLEETGUARD, "serve", "--data-dir", str(data), "--port", str(port),
                 "--device-port", str(device_port), "--log-level", "warning"],
                env=env, stdout=log, stderr=subprocess.STDOUT,
            )
        bundle = str(data / "ca" / "bundle.pem")
        tls = ssl.create_default_context(cafile=bundle)
        base = f"https://127.0.0.1:{port}"
        enroll_url = f"https://127.0.0.1:{device_port}/v1/enroll"
        deadline = time.monotonic() + 60
        while True:
            try:
                httpx.get(f"{base}/healthz", verify=tls, timeout=2)
                httpx.get(f"https://127.0.0.1:{device_port}/v1/ca.pem", verify=tls, timeout=2)
                break
            except httpx.HTTPError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise SystemExit("server did not start:\n" + log_path.read_text()) from None
                time.sleep(0.2)
        secrets_ = [enroll_mfa(base, tls, name, password) for name in operators]

        n = args.samples
        login_unloaded = [timed_login(base, tls, operators[i], password, secrets_[i])
                          for i in range(n)]
        enroll_unloaded = [timed_enrollment(enroll_url, tls, tokens[i], csrs[i]) for i in range(n)]
        rss_before = rss_mb(server.pid)

        parent, child = multiprocessing.get_context("spawn").Pipe()
        flood = multiprocessing.get_context("spawn").Process(
            target=flood_main, daemon=True,
            args=(args.hold, {"operator API": port, "device endpoint": device_port},
                  {"operator API": b"/api/v1/auth/login", "device endpoint": b"/v1/enroll"},
                  bundle, child),
        )
        flood_start = time.monotonic()
        flood.start()
        if not parent.poll(300):
            raise SystemExit("the flood did not open its connections within 300 s")
        _, at_open = parent.recv()
        opened_s = time.monotonic() - flood_start
        opened_at = time.monotonic()
        rss_held = rss_mb(server.pid)
        login_loaded = [timed_login(base, tls, operators[i], password, secrets_[i])
                        for i in range(n, 2 * n)]
        enroll_loaded = [timed_enrollment(enroll_url, tls, tokens[i], csrs[i])
                         for i in range(n, 2 * n)]
        parent.send("snapshot")
        _, at_measure = parent.recv()
        measured_after_s = time.monotonic() - opened_at
        time.sleep(max(0.0, SETTLE_S - (time.monotonic() - opened_at)))
        parent.send("snapshot")
        _, settled = parent.recv()
        rss_settled = rss_mb(server.pid)
        after_s = time.monotonic() - opened_at
        parent.send("stop")
        flood.join(timeout=60)
        if server.poll() is not None:
            raise SystemExit("the server died:\n" + log_path.read_text())
        guard_lines = [line for line in log_path.read_text().splitlines()
                       if "connections closed or refused" in line]
    finally:
        if server is not None:
            server.terminate()
            server.wait(timeout=15)
        shutil.rmtree(tmp, ignore_errors=True)

    lu, ll = statistics.median(login_unloaded) * 1000, statistics.median(login_loaded) * 1000
    eu, el = statistics.median(enroll_unloaded) * 1000, statistics.median(enroll_loaded) * 1000
    print(f"flood: {args.hold} connections held by a separate process, opened in "
          f"{opened_s:.1f} s; {n} samples each, median")
    print(f"operator login (TLS + password + TOTP): unloaded {lu:.1f} ms, "
          f"loaded {ll:.1f} ms, ratio loaded/unloaded {ll / lu:.2f}")
    print(f"device enrollment (TLS + token + CSR): unloaded {eu:.1f} ms, "
          f"loaded {el:.1f} ms, ratio loaded/unloaded {el / eu:.2f}")
    print(f"server RSS: {rss_before} before the flood, {rss_held} with it open, "
          f"{rss_settled} {after_s:.0f} s later")
    print_flood("when the flood was open", at_open, args.hold)
    print_flood(f"after the loaded measurement ({measured_after_s:.1f} s later)", at_measure,
                args.hold)
    print_flood(f"{after_s:.0f} s after the flood was open", settled, args.hold)
    print("the server's own account (at most one line a minute per listener):")
    for line in guard_lines:
        print("  " + line.split("fleetguard.server: ", 1)[-1])


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        main()
