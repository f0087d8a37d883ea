"""A real installation, a real Mosquitto on a free loopback port, real enrolled devices."""

from __future__ import annotations

import dataclasses
import os
import pwd
import queue
import shutil
import ssl
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode

from fleetguard.broker import (
    BrokerConfig,
    BrokerFiles,
    BrokerProcess,
    BrokerSyncThread,
    DynsecAdmin,
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
from tests.processes import free_port

pytestmark = pytest.mark.process

MOSQUITTO = Path("/usr/sbin/mosquitto")


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    path.write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ))


@dataclass(frozen=True)
class DeviceCreds:
    device_id: str
    serial_hex: str
    cert: Path
    key: Path


@dataclass
class Fleet:
    tmp: Path
    db: Database
    ca: FleetCA
    files: BrokerFiles
    process: BrokerProcess
    sync: BrokerSyncThread
    admin: DynsecAdmin

    def enroll(self, name: str) -> DeviceCreds:
        """Register a device and enroll it with a CSR made here, as an agent would."""
        key = ec.generate_private_key(ec.SECP256R1())
        csr = (
            x509.CertificateSigningRequestBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
            .sign(key, hashes.SHA256())
            .public_bytes(serialization.Encoding.PEM)
        )
        with self.db.session() as session:
            device = registry.register_device(session, name=name, actor="test")
            token, _ = identity.create_enrollment_token(
                session, self.ca, device_id=device.id, actor="test", issuer=None
            )
            result = identity.enroll_with_token(
                session, self.ca, token=token, csr=csr, source="127.0.0.1"
            )
        directory = self.tmp / "devices" / name
        directory.mkdir(parents=True)
        (directory / "device.crt").write_text(result.chain_pem)
        _write_key(directory / "device.key", key)
        return DeviceCreds(device.id, result.serial_hex, directory / "device.crt",
                           directory / "device.key")

    def dynsec_clients(self) -> set[str]:
        return {str(c["username"]) for c in self.admin.list_clients()}

    def wait_entitled(self, device_id: str, timeout: float = 5.0) -> None:
        """Until the sync loop has given the device its dynsec client."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if device_id in self.dynsec_clients():
                return
            time.sleep(0.05)
        raise AssertionError(f"device {device_id} never got broker access")


@dataclass
class Client:
    """A paho-mqtt 2.x MQTT v5 client over TLS that records what happens to it."""

    files: BrokerFiles
    cert: Path | None
    key: Path | None
    client_id: str = field(default_factory=lambda: f"t-{uuid.uuid4().hex[:10]}")
    ca_file: Path | None = None
    protocol: int = mqtt.MQTTv5  # MQTTv311: as the device agent speaks

    def __post_init__(self) -> None:
        ctx = ssl.create_default_context(cafile=str(self.ca_file or self.files.ca_bundle))
        if self.cert is not None and self.key is not None:
            ctx.load_cert_chain(str(self.cert), str(self.key))
        self.mqtt = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=self.client_id,
                                protocol=self.protocol)
        self.mqtt.tls_set_context(ctx)
        self.mqtt.reconnect_delay_set(1, 1)
        self.connects = 0
        self.connected = threading.Event()
        self.gone = threading.Event()
        self.disconnected_at: float | None = None
        self.disconnect_reason: ReasonCode | None = None
        self.messages: queue.Queue[tuple[str, bytes]] = queue.Queue()
        self._acks: dict[int, ReasonCode] = {}
        self._subacks: dict[int, list[ReasonCode]] = {}
        self._cv = threading.Condition()
        self.mqtt.on_connect = self._on_connect
        self.mqtt.on_disconnect = self._on_disconnect
        self.mqtt.on_connect_fail = lambda *_: self.gone.set()
        self.mqtt.on_message = lambda _c, _u, m: self.messages.put((m.topic, m.payload))
        self.mqtt.on_publish = self._on_publish
        self.mqtt.on_subscribe = self._on_subscribe
        self._looping = False

    def _on_connect(self, _c: object, _u: object, _f: object, rc: ReasonCode, _p: object) -> None:
        if not rc.is_failure:
            self.connects += 1
            self.connected.set()
        else:
            self.gone.set()

    def _on_disconnect(self, _c: object, _u: object, _f: object, rc: ReasonCode,
                       _p: object) -> None:
        if self.connected.is_set() and self.disconnected_at is None:
            self.disconnected_at = time.monotonic()
            self.disconnect_reason = rc
        self.gone.set()

    def _on_publish(self, _c: object, _u: object, mid: int, rc: ReasonCode, _p: object) -> None:
        with self._cv:
            self._acks[mid] = rc
            self._cv.notify_all()

    def _on_subscribe(self, _c: object, _u: object, mid: int, rcs: list[ReasonCode],
                      _p: object) -> None:
        with self._cv:
            self._subacks[mid] = rcs
            self._cv.notify_all()

    def connect(self, timeout: float = 5.0) -> bool:
        """True when the broker accepted us (CONNACK success), False when it refused."""
        try:
            self.mqtt.connect(self.files.connect_host, self.files.port, keepalive=10)
        except (OSError, ssl.SSLError):
            return False
        self.mqtt.loop_start()
        self._looping = True
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.connected.is_set():
                return True
            if self.gone.is_set():
                return False
            time.sleep(0.01)
        return False

    def publish(self, topic: str, payload: bytes, timeout: float = 5.0) -> ReasonCode | None:
        """The PUBACK's reason code (None: not sent, no link)."""
        info = self.mqtt.publish(topic, payload, qos=1)
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            return None
        with self._cv:
            self._cv.wait_for(lambda: info.mid in self._acks, timeout)
            return self._acks.get(info.mid)

    def subscribe(self, topic: str, timeout: float = 5.0) -> ReasonCode:
        result, mid = self.mqtt.subscribe(topic, qos=1)
        assert result == mqtt.MQTT_ERR_SUCCESS
        with self._cv:
            assert self._cv.wait_for(lambda: mid in self._subacks, timeout)
            return self._subacks[mid][0]

    def close(self) -> None:
        self.mqtt.disconnect()
        if self._looping:
            self.mqtt.loop_stop()
            self._looping = False


def drain_until(messages: queue.Queue[tuple[str, bytes]], marker: bytes,
                timeout: float = 5.0) -> list[tuple[str, bytes]]:
    """Everything received up to and including ``marker`` (which must arrive)."""
    got: list[tuple[str, bytes]] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            item = messages.get(timeout=0.1)
        except queue.Empty:
            continue
        got.append(item)
        if item[1] == marker:
            return got
    raise AssertionError(f"marker {marker!r} never arrived; got {got}")


@contextmanager
def reachable_directory(prefix: str = "fg-broker-") -> Iterator[Path]:
    """A directory other accounts may traverse (pytest's own are 0700): a broker started by
    root over a data dir in here runs as the mosquitto account, as it does under /var/lib."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    os.chmod(path, 0o711)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@contextmanager
def running_fleet(tmp: Path, config: BrokerConfig | None = None) -> Iterator[Fleet]:
    """An installation in ``tmp/data`` and its broker (``config``'s limits, a free port, no
    persistence) with the sync loop, the log watch and an admin; all stopped on exit."""
    if not MOSQUITTO.exists() or shutil.which("openssl") is None:
        pytest.skip("mosquitto 2 is not installed at /usr/sbin/mosquitto")
    settings = load_settings(tmp / "data")
    init_installation(settings)
    db = open_installation_database(settings, migrate=False)
    ca = open_installation_ca(settings, load_master_key(settings))
    config = dataclasses.replace(config or BrokerConfig(), port=free_port(), persistence=False,
                                 mosquitto=MOSQUITTO)
    files = prepare_broker(settings, ca, config)
    process = broker_process(files, config)
    process.start()
    try:
        sync = run_broker_sync(db, files, process=process, ca=ca)
        try:
            # The sync loop's admin: the broker names a client by its certificate, so a
            # second admin connection would take the loop's place.
            yield Fleet(tmp, db, ca, files, process, sync, sync.admin)
        finally:
            sync.stop()
    finally:
        code = process.stop()
        ca.close()
        db.dispose()
    assert code == 0, (files.log_file.read_text())[-2000:]


@pytest.fixture(scope="package")
def reachable_tmp() -> Iterator[Path]:
    with reachable_directory() as path:
        yield path


@pytest.fixture(scope="package")
def fleet(reachable_tmp: Path) -> Iterator[Fleet]:
    with running_fleet(reachable_tmp) as fleet:
        yield fleet


@contextmanager
def platform_reader(fleet: Fleet) -> Iterator[Client]:
    """The platform's own identity, connected and subscribed to every device topic."""
    client = Client(fleet.files, fleet.files.service_cert, fleet.files.service_key)
    try:
        assert client.connect()
        assert not client.subscribe("fg/d/+/#").is_failure
        yield client
    finally:
        client.close()


@pytest.fixture
def service(fleet: Fleet) -> Iterator[Client]:
    with platform_reader(fleet) as client:
        yield client


@pytest.fixture
def device(fleet: Fleet) -> DeviceCreds:
    creds = fleet.enroll(f"dev-{uuid.uuid4().hex[:8]}")
    fleet.wait_entitled(creds.device_id)
    return creds




def broker_account() -> pwd.struct_passwd:
    """The account Mosquitto drops to; the test skips where the package did not make it."""
    try:
        return pwd.getpwnam("mosquitto")
    except KeyError:
        pytest.skip("no mosquitto account (the Debian package creates it)")


def readable_by_broker_account(path: Path) -> bool:
    # As mosquitto itself runs: the account's uid, its group, no supplementary groups of ours.
    done = subprocess.run(["test", "-r", str(path)], user="mosquitto", group="mosquitto",
                          extra_groups=[], check=False)
    return done.returncode == 0
