"""Enrollments per second over HTTPS against a real `fleetguard serve`.

Each enrollment is a full device request: TLS to the device endpoint, token lookup and
consumption, CSR parsing and proof of possession, key-uniqueness check, signing, the
certificate row, the device's state change and two audit entries, all committed.
In the same run, the ceiling: the same CA signing the same kind of CSRs in-process.

    python benchmarks/bench_enroll.py [--count 600] [--clients 8]

Target (issue 3): at least 300 enrollments/s over HTTPS.
"""

from __future__ import annotations

import argparse
import os
import shutil
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


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--count", type=int, default=600)
    parser.add_argument("--clients", type=int, default=8)
    args = parser.parse_args()

    from fleetguard.core.config import load_settings
    from fleetguard.identity import service as identity
    from fleetguard.identity.ca import open_installation_ca
    from fleetguard.install import init_installation, open_installation_database
    from fleetguard.keys import load_master_key
    from fleetguard.registry import service as registry

    tmp = Path(tempfile.mkdtemp(prefix="fg-enroll-"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLEETGUARD_")}
    settings = load_settings(tmp / "data", f"sqlite:///{tmp / 'data' / 'fleetguard.db'}")
    init_installation(settings)
    db = open_installation_database(settings)
    ca = open_installation_ca(settings, load_master_key(settings))
    tokens = []
    with db.session() as session:
        for i in range(args.count):
            device = registry.register_device(session, name=f"bench-{i}", actor="bench")
            token, _ = identity.create_enrollment_token(session, ca, device_id=device.id,
                                                        actor="bench")
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
    log = (tmp / "server.log").open("w")
    server = subprocess.Popen(
        [*FLEETGUARD, "serve", "--data-dir", str(settings.data_dir), "--port", str(port),
         "--device-port", str(device_port), "--log-level", "warning"],
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
                if time.monotonic() > deadline:
                    raise SystemExit("server did not start") from None
                time.sleep(0.2)

        def worker(idx: int) -> int:
            done = 0
            with httpx.Client(verify=context, timeout=30) as client:
                for j in range(idx, args.count, args.clients):
                    r = client.post(url, json={"token": tokens[j], "csr": csrs[j]})
                    if r.status_code != 201:
                        raise SystemExit(f"enrollment failed: {r.status_code} {r.text}")
                    done += 1
            return done

        start = time.perf_counter()
        with ThreadPoolExecutor(args.clients) as pool:
            total = sum(pool.map(worker, range(args.clients)))
        elapsed = time.perf_counter() - start
    finally:
        server.terminate()
        server.wait(timeout=15)
        shutil.rmtree(tmp, ignore_errors=True)
    rate = total / elapsed
    print(f"HTTPS enrollments: {total} in {elapsed:.2f} s = {rate:.0f}/s "
          f"({args.clients} client threads, keep-alive, SQLite)")
    print(f"ceiling, in-process signing of the same CSRs: {ceiling:.0f}/s")
    print(f"ratio HTTPS/in-process: {rate / ceiling:.2f}")
    print(f"ratio to the {TARGET}/s target: {rate / TARGET:.2f}")


if __name__ == "__main__":
    main()
