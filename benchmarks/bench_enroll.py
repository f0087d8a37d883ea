"""Enrollments per second over HTTPS against a real `fleetguard serve`.

Each enrollment is a full device request: TLS to the device endpoint, token lookup and
consumption, CSR parsing and proof of possession, key-uniqueness check, signing, the
certificate row, the device's state change and two audit entries, all committed.
In the same run, the ceiling: the same CA signing the same kind of CSRs in-process; and,
after the enrollments, the HTTP stack's floor: a trivial GET (the CA bundle) on the same
server for 3 s, with its server CPU per request. `--profile FILE` records the server with
py-spy (`--gil`, raw format) while it enrolls.

    python benchmarks/bench_enroll.py [--count 2000] [--clients 8] [--device-workers 1]
                                      [--db sqlite|postgresql] [--profile FILE]

Target (issue 3): at least 300 enrollments/s over HTTPS. The rate is taken from the
server's own issue times of the first and the last certificate; the server's CPU time
per enrollment (all its processes) is printed too, since it does not depend on what
else the machine is doing.
"""

from __future__ import annotations

import argparse
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

FLEETGUARD = [sys.executable, "-m", "fleetguard.cli"]
TARGET = 300
PG_ADMIN = os.environ.get("FLEETGUARD_TEST_POSTGRES", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def make_csr() -> str:
    key = ec.generate_private_key(ec.SECP256R1())
    csr = (x509.CertificateSigningRequestBuilder()
           .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "bench")]))
           .sign(key, hashes.SHA256()))
    return csr.public_bytes(serialization.Encoding.PEM).decode()


WRK_SCRIPT = """
local bodies = {}
for line in io.lines("%(bodies)s") do bodies[#bodies + 1] = line end
local next_body = 0
local created = 0
local failed = 0
function request()
  next_body = next_body + 1
  if next_body > #bodies then
    -- every token is in flight: keep the connections busy with a cheap read
    return wrk.format("GET", "/v1/ca.pem")
  end
  return wrk.format("POST", "/v1/enroll", {["Content-Type"] = "application/json"},
                    bodies[next_body])
end
function response(status, headers, body)
  if status == 201 then created = created + 1 elseif status ~= 200 then failed = failed + 1 end
  -- wrk calls request() once at start-up without sending it: one body is never used.
  if created + failed >= #bodies - 1 then
    io.write(string.format("CREATED %%d FAILED %%d\\n", created, failed))
    wrk.thread:stop()
  end
end
"""


def issued_span(database_url: str) -> tuple[int, float]:
    """Certificates issued so far and the time between the first and the last."""
    from sqlalchemy import create_engine, func, select

    from fleetguard.store.tables import DeviceCertificateRow

    engine = create_engine(database_url.replace("postgresql://", "postgresql+psycopg://"))
    try:
        with engine.connect() as conn:
            count, first, last = conn.execute(select(
                func.count(), func.min(DeviceCertificateRow.created_at),
                func.max(DeviceCertificateRow.created_at),
            )).one()
    finally:
        engine.dispose()
    if not count:
        return 0, 0.0
    return int(count), (last - first).total_seconds()


def cpu_seconds(pid: int) -> float:
    """User+system CPU of a process and its children (device workers)."""
    import psutil

    proc = psutil.Process(pid)
    total = 0.0
    for p in [proc, *proc.children(recursive=True)]:
        try:
            times = p.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += times.user + times.system
    return total


def wrk_enroll(
    device_port: int, tokens: list[str], csrs: list[str], connections: int, tmp: Path,
    database_url: str,
) -> tuple[int, float]:
    """wrk (C, one thread) drives the load so the measured cost is the server's; the rate
    comes from the server's own issue times of the first and last certificate."""
    import json

    bodies = tmp / "bodies.txt"
    bodies.write_text("".join(json.dumps({"token": t, "csr": c}) + "\n"
                              for t, c in zip(tokens, csrs, strict=True)))
    script = tmp / "enroll.lua"
    script.write_text(WRK_SCRIPT % {"bodies": bodies})
    proc = subprocess.Popen(
        ["wrk", "-t1", f"-c{connections}", "-d120s", "-s", str(script),
         f"https://127.0.0.1:{device_port}"], stdout=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline:
            time.sleep(0.2)
            count, span = issued_span(database_url)
            if count >= len(tokens) - 1:  # wrk's start-up call consumes one body unsent
                return count - 1, span  # intervals between first and last issue
        raise SystemExit("enrollments did not finish in 120 s")
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def wrk_get_ceiling(device_port: int, connections: int, pid: int, seconds: int = 3
                    ) -> tuple[float, float]:
    """The same server answering a trivial GET (the CA bundle) over the same TLS: requests/s
    and server CPU ms per request, the HTTP stack's own floor beside the enrollment cost."""
    import re

    before = cpu_seconds(pid)
    out = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s",
         f"https://127.0.0.1:{device_port}/v1/ca.pem"],
        capture_output=True, text=True, check=True,
    ).stdout
    cpu = cpu_seconds(pid) - before
    match = re.search(r"(\d+) requests in", out)
    if match is None:
        raise SystemExit("unexpected wrk output:\n" + out)
    requests = int(match.group(1))
    return requests / seconds, cpu / requests * 1000


def python_enroll(
    url: str, tokens: list[str], csrs: list[str], clients: int, context: object
) -> tuple[int, float]:
    def worker(idx: int) -> int:
        done = 0
        with httpx.Client(verify=context, timeout=30) as client:  # type: ignore[arg-type]
            for j in range(idx, len(tokens), clients):
                r = client.post(url, json={"token": tokens[j], "csr": csrs[j]})
                if r.status_code != 201:
                    raise SystemExit(f"enrollment failed: {r.status_code} {r.text}")
                done += 1
        return done

    start = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        total = sum(pool.map(worker, range(clients)))
    return total, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--count", type=int, default=2000)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--python-client", action="store_true", help="no wrk")
    parser.add_argument("--device-workers", type=int, default=1)
    parser.add_argument("--db", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--profile", metavar="FILE",
                        help="record the server with py-spy (--gil, raw) while it enrolls")
    args = parser.parse_args()
    if args.db == "postgresql":
        from sqlalchemy import create_engine, text

        name = f"fg_enroll_{secrets.token_hex(4)}"
        admin = create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        try:
            run(args, PG_ADMIN.rsplit("/", 1)[0] + "/" + name)
        finally:
            with admin.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            admin.dispose()
    else:
        run(args, None)


def run(args: argparse.Namespace, database_url: str | None) -> None:
    from fleetguard.core.config import load_settings
    from fleetguard.identity import service as identity
    from fleetguard.identity.ca import open_installation_ca
    from fleetguard.install import init_installation, open_installation_database
    from fleetguard.keys import load_master_key
    from fleetguard.registry import service as registry

    tmp = Path(tempfile.mkdtemp(prefix="fg-enroll-"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLEETGUARD_")}
    database_url = database_url or f"sqlite:///{tmp / 'data' / 'fleetguard.db'}"
    env["FLEETGUARD_DATABASE_URL"] = database_url
    settings = load_settings(tmp / "data", database_url)
    init_installation(settings)
    db = open_installation_database(settings)
    ca = open_installation_ca(settings, load_master_key(settings))
    tokens = []
    with db.session() as session:
        for i in range(args.count):
            device = registry.register_device(session, name=f"bench-{i}", actor="bench")
            token, _ = identity.create_enrollment_token(session, ca, device_id=device.id,
                                                        actor="bench", issuer=None)
            tokens.append(token)
    csrs = [make_csr() for _ in range(args.count)]

    # Ceiling: the same CA signing the same kind of CSRs in-process.
    extra = [make_csr() for _ in range(args.count)]
    start = time.perf_counter()
    for csr in extra:
        ca.issue_device_certificate(csr.encode(), uuid.uuid4())
    ceiling = args.count / (time.perf_counter() - start)
    ca.close()
    db.dispose()

    port, device_port = free_port(), free_port()
    log_path = tmp / "server.log"
    log = log_path.open("w")
    server = subprocess.Popen(
        [*FLEETGUARD, "serve", "--data-dir", str(settings.data_dir), "--port", str(port),
         "--device-port", str(device_port), "--device-workers", str(args.device_workers),
         "--log-level", "warning"],
        env=env, stdout=log, stderr=subprocess.STDOUT,
    )
    bundle = str(settings.data_dir / "ca" / "bundle.pem")
    url = f"https://127.0.0.1:{device_port}/v1/enroll"
    try:
        import ssl

        context = ssl.create_default_context(cafile=bundle)
        deadline = time.monotonic() + 60
        while True:
            try:
                httpx.get(f"https://127.0.0.1:{device_port}/v1/ca.pem", verify=context, timeout=2)
                break
            except httpx.HTTPError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise SystemExit("server did not start:\n" + log_path.read_text()) from None
                time.sleep(0.2)

        profiler = None
        if args.profile:
            profiler = subprocess.Popen(
                ["py-spy", "record", "--gil", "--subprocesses", "-f", "raw", "-r", "250",
                 "-o", args.profile, "-p", str(server.pid)], stdout=subprocess.DEVNULL,
            )
            time.sleep(1)
        cpu_before = cpu_seconds(server.pid)
        if shutil.which("wrk") and not args.python_client:
            total, elapsed = wrk_enroll(device_port, tokens, csrs, args.clients, tmp,
                                        database_url)
            tool = f"wrk, {args.clients} connections"
        else:
            total, elapsed = python_enroll(url, tokens, csrs, args.clients, context)
            tool = f"{args.clients} Python client threads"
        cpu = cpu_seconds(server.pid) - cpu_before
        if profiler is not None:
            profiler.send_signal(signal.SIGINT)
            profiler.wait(timeout=30)
        get_rate, get_cpu = (wrk_get_ceiling(device_port, args.clients, server.pid)
                             if shutil.which("wrk") else (0.0, 0.0))
    finally:
        server.terminate()
        server.wait(timeout=15)
        shutil.rmtree(tmp, ignore_errors=True)
    rate = total / elapsed
    print(f"HTTPS enrollments: {total} in {elapsed:.2f} s = {rate:.0f}/s "
          f"({tool}, keep-alive, {args.db}, {args.device_workers} device-endpoint processes)")
    print(f"server CPU per enrollment: {cpu / total * 1000:.2f} ms "
          f"(all server processes, {os.cpu_count()} CPUs)")
    if get_rate:
        print(f"bare GET on the same server (CA bundle): {get_rate:.0f}/s, "
              f"server CPU per request: {get_cpu:.2f} ms")
    print(f"ceiling, in-process signing of the same CSRs: {ceiling:.0f}/s")
    print(f"ratio HTTPS/in-process: {rate / ceiling:.2f}")
    print(f"ratio to the {TARGET}/s target: {rate / TARGET:.2f}")


if __name__ == "__main__":
    main()
