"""Revocation-to-cut-off latency of a connected device on a real Mosquitto, vs the 5 s limit.

Each trial enrolls a device (real CSR, real certificate), connects it over mutual TLS,
then times from the call to ``identity.revoke_certificate`` (committed) to the moment
the device's own MQTT client sees the broker drop it, and checks that a fresh connection
with the revoked certificate is refused. The broker and the reconcile loop run as
`fleetguard broker` runs them (1 s reconcile interval, CRL polled every 0.2 s).
"""

from __future__ import annotations

import os
import socket
import ssl
import statistics
import tempfile
import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from paho.mqtt.enums import CallbackAPIVersion

from fleetguard.broker import (
    BrokerConfig,
    BrokerFiles,
    broker_process,
    prepare_broker,
    run_broker_sync,
)
from fleetguard.core.config import load_settings
from fleetguard.identity import service as identity
from fleetguard.identity.ca import open_installation_ca
from fleetguard.install import init_installation, open_installation_database
from fleetguard.keys import load_master_key
from fleetguard.pki import FleetCA
from fleetguard.registry import service as registry
from fleetguard.store import Database

TRIALS = 20
LIMIT = 5.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _enroll(db: Database, ca: FleetCA, directory: Path, name: str) -> tuple[str, str, Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    csr = (x509.CertificateSigningRequestBuilder()
           .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
           .sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM))
    with db.session() as session:
        device = registry.register_device(session, name=name, actor="bench")
        token, _ = identity.create_enrollment_token(session, ca, device_id=device.id,
                                                    actor="bench", issuer=None)
        result = identity.enroll_with_token(session, ca, token=token, csr=csr, source="bench")
    cert, key_file = directory / f"{name}.crt", directory / f"{name}.key"
    cert.write_text(result.chain_pem)
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return device.id, result.serial_hex, cert, key_file


def _client(files: BrokerFiles, cert: Path, key: Path) -> tuple[mqtt.Client, threading.Event,
                                                                  threading.Event]:
    ctx = ssl.create_default_context(cafile=str(files.ca_bundle))
    ctx.load_cert_chain(str(cert), str(key))
    client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    client.tls_set_context(ctx)
    up, down = threading.Event(), threading.Event()
    client.on_connect = lambda _c, _u, _f, rc, _p: (down if rc.is_failure else up).set()
    client.on_disconnect = lambda *_: down.set()
    return client, up, down


def _refused(files: BrokerFiles, cert: Path, key: Path) -> bool:
    client, up, down = _client(files, cert, key)
    try:
        client.connect(files.connect_host, files.port)
    except (OSError, ssl.SSLError):
        return True
    client.loop_start()
    try:
        deadline = time.monotonic() + LIMIT
        while time.monotonic() < deadline and not (up.is_set() or down.is_set()):
            time.sleep(0.01)
        return not up.is_set()
    finally:
        client.disconnect()
        client.loop_stop()


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        os.chmod(tmp, 0o711)  # as under /var/lib: the broker runs as its own account
        settings = load_settings(Path(tmp) / "data")
        init_installation(settings)
        db = open_installation_database(settings, migrate=False)
        with open_installation_ca(settings, load_master_key(settings)) as ca:
            files = prepare_broker(settings, ca, BrokerConfig(port=_free_port(),
                                                              persistence=False))
            with broker_process(files) as process, \
                    run_broker_sync(db, files, process=process, ca=ca) as sync:
                admin = sync.admin  # the broker's one admin connection: share it
                latencies, kept_out = [], 0
                for i in range(TRIALS):
                    device_id, serial, cert, key = _enroll(db, ca, Path(tmp), f"bench-{i}")
                    while device_id not in {c["username"] for c in admin.list_clients()}:
                        time.sleep(0.05)
                    client, up, down = _client(files, cert, key)
                    client.connect(files.connect_host, files.port)
                    client.loop_start()
                    assert up.wait(LIMIT), "device could not connect"
                    start = time.monotonic()
                    with db.session() as session:
                        identity.revoke_certificate(session, ca, serial_hex=serial,
                                                    actor="bench")
                    cut = down.wait(2 * LIMIT)
                    latencies.append(time.monotonic() - start if cut else float("inf"))
                    client.loop_stop()
                    kept_out += _refused(files, cert, key)
        db.dispose()
    ordered = sorted(latencies)
    p50 = statistics.median(ordered)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * len(ordered)) - 1)]
    print(f"revocation -> cut-off over {TRIALS} trials: p50 {p50:.3f} s, p95 {p95:.3f} s, "
          f"max {ordered[-1]:.3f} s")
    print(f"limit {LIMIT:.1f} s: p95 is {p95 / LIMIT:.1%} of the limit "
          f"({LIMIT / p95:.1f}x headroom); kept out afterwards: {kept_out}/{TRIALS}")


if __name__ == "__main__":
    main()
