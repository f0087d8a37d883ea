"""Memory per simulated connected device, against the limit of 10,000 devices in 2 GiB.

Starts a real Mosquitto (mutual TLS, client certificates required, per-device ACL) on a
free loopback port, then, in a fresh child process per fleet size, issues N device
certificates from a throwaway CA made here (enrollment through the server is measured
by the sim tests, not here: it costs time, not resident memory), connects N simulated
devices (one TLS connection, one SSLContext, one MQTT session each), lets every device
publish a few QoS 1 reports, and reports the child's RSS growth divided by N.

    python benchmarks/bench_sim.py [--sizes 1000 5000] [--interval 2]
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import json
import os
import resource
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

LIMIT_BYTES = 2 * 1024**3
LIMIT_DEVICES = 10_000


def _name(cn: str):  # type: ignore[no-untyped-def]
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def make_ca():  # type: ignore[no-untyped-def]
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.now(UTC)
    cert = (x509.CertificateBuilder().subject_name(_name("bench root")).issuer_name(_name("bench root"))
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(minutes=5)).not_valid_after(now + timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    return key, cert


def issue(ca_key, ca_cert, cn: str, server: bool = False) -> tuple[bytes, bytes]:  # type: ignore[no-untyped-def]
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.now(UTC)
    san = ([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))] if server
           else [x509.UniformResourceIdentifier(f"urn:fleetguard:device:{cn}")])
    cert = (x509.CertificateBuilder().subject_name(_name(cn)).issuer_name(ca_cert.subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(minutes=1)).not_valid_after(now + timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName(san), critical=False)
            .sign(ca_key, hashes.SHA256()))
    return (key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                              serialization.NoEncryption()),
            cert.public_bytes(serialization.Encoding.PEM))


def rss() -> int:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def child(n: int, port: int, directory: Path, interval: float) -> None:
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    from fleetguard.sim import (
        ContextFactory,
        FleetSimulator,
        SimIdentity,
        SimSettings,
        SimTransport,
    )

    ca_pem = (directory / "ca.pem").read_bytes()
    ca_cert = x509.load_pem_x509_certificate(ca_pem)
    ca_key = serialization.load_pem_private_key((directory / "ca.key").read_bytes(), None)
    identities = []
    for i in range(n):
        device_id = str(uuid.uuid4())
        key, cert = issue(ca_key, ca_cert, device_id)
        identities.append(SimIdentity(device_id, f"bench-{i}", key, cert))
    contexts = ContextFactory(ca_pem)
    settings = SimSettings(transport=SimTransport.MQTT, host="127.0.0.1", port=port,
                           interval_s=interval, duration_s=interval * 2.5, seed=1,
                           connect_concurrency=100)
    sim = FleetSimulator(identities, settings, contexts)
    base = rss()

    async def run() -> dict[str, float]:
        started = time.monotonic()
        await sim.connect_all()
        connect_s = time.monotonic() - started
        connected = rss()
        await sim.run()
        after = rss()
        await sim.close_all()
        return {"connect_s": connect_s, "rss_connected": connected, "rss_after_reports": after}

    result = asyncio.run(run())
    contexts.close()
    print(json.dumps({"n": n, "base": base, "connected": sim.stats.connected,
                      "failures": sim.stats.connect_failures, "reports": sim.stats.reports_sent,
                      "report_failures": sim.stats.reports_failed, **result}))


def _raise_nofile() -> None:
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 5000])
    parser.add_argument("--interval", type=float, default=2.0)
    parser.add_argument("--child", type=int)
    parser.add_argument("--port", type=int)
    parser.add_argument("--dir", type=Path)
    args = parser.parse_args()
    _raise_nofile()
    if args.child:
        child(args.child, args.port, args.dir, args.interval)
        return
    from cryptography.hazmat.primitives import serialization

    mosquitto = "/usr/sbin/mosquitto"
    if not Path(mosquitto).exists():
        sys.exit("mosquitto is not installed")
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        ca_key, ca_cert = make_ca()
        (directory / "ca.pem").write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
        (directory / "ca.key").write_bytes(ca_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption()))
        key, cert = issue(ca_key, ca_cert, "127.0.0.1", server=True)
        (directory / "broker.key").write_bytes(key)
        (directory / "broker.crt").write_bytes(cert)
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        (directory / "acl").write_text("pattern write fg/d/%u/telemetry\npattern read fg/d/%u/cmd\n")
        (directory / "mosquitto.conf").write_text(
            f"user root\nallow_anonymous false\nacl_file {directory}/acl\n"
            f"listener {port} 127.0.0.1\ncafile {directory}/ca.pem\ncertfile {directory}/broker.crt\n"
            f"keyfile {directory}/broker.key\nrequire_certificate true\n"
            "use_identity_as_username true\nmax_connections -1\nlog_type error\n")
        broker = subprocess.Popen([mosquitto, "-c", str(directory / "mosquitto.conf")],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            time.sleep(0.5)
            print(f"{'devices':>8} {'connected':>9} {'connect s':>9} {'KiB/device':>10} "
                  f"{'10k proj.':>10} {'limit':>8} {'ratio':>6}")
            for n in args.sizes:
                out = subprocess.run(
                    [sys.executable, __file__, "--child", str(n), "--port", str(port),
                     "--dir", str(directory), "--interval", str(args.interval)],
                    capture_output=True, text=True, check=True, timeout=1800,
                )
                data = json.loads(out.stdout.strip().splitlines()[-1])
                peak = max(data["rss_connected"], data["rss_after_reports"])
                per_device = (peak - data["base"]) / n
                projected = per_device * LIMIT_DEVICES
                print(f"{n:>8} {data['connected']:>9} {data['connect_s']:>9.1f} "
                      f"{per_device / 1024:>10.1f} {projected / 1024**3:>8.2f}GiB "
                      f"{LIMIT_BYTES / 1024**3:>6.0f}GiB {projected / LIMIT_BYTES:>6.2f}"
                      f"   ({data['reports']} reports, {data['report_failures']} failed)")
        finally:
            broker.terminate()
            broker.wait(timeout=10)
    print("ratio = projected RSS for 10,000 devices / 2 GiB (below 1.0 meets the target)")


if __name__ == "__main__":
    main()
