"""A real Mosquitto for tests: its own config on a free loopback port, client certs required.

The ACL mirrors the broker contract: a device (username = certificate CN = its uuid)
publishes only under fg/d/<uuid>/ and reads only its command topic; the platform reads
everything and writes commands.
"""

from __future__ import annotations

import shutil
import ssl
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.agent.pki import TestCA
from tests.processes import free_port, stop_process, wait_until_listening

MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
PLATFORM_CN = "fleetguard-platform"


def require_mosquitto() -> None:
    if not Path(MOSQUITTO).exists():
        pytest.skip("mosquitto is not installed (apt-get install mosquitto)")


@dataclass
class Mosquitto:
    directory: Path
    ca: TestCA
    ca_file: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @classmethod
    def configure(cls, directory: Path, ca: TestCA, *, ca_file: Path | None = None,
                  server_pair: tuple[Path, Path] | None = None) -> Mosquitto:
        directory.mkdir(parents=True, exist_ok=True)
        if ca_file is None:
            ca_file = directory / "ca.pem"
            ca_file.write_bytes(ca.pem)
        key, cert = server_pair or ca.write_pair(directory, "broker", "127.0.0.1", server=True)
        broker = cls(directory, ca, ca_file)
        (directory / "acl").write_text(
            f"user {PLATFORM_CN}\ntopic read fg/d/#\ntopic write fg/d/+/cmd\n\n"
            "pattern write fg/d/%u/telemetry\npattern write fg/d/%u/heartbeat\n"
            "pattern write fg/d/%u/cmd/result\npattern read fg/d/%u/cmd\n"
        )
        (directory / "mosquitto.conf").write_text(
            "user root\nper_listener_settings false\nallow_anonymous false\n"
            f"persistence true\npersistence_location {directory}/\n"
            f"log_dest file {directory}/mosquitto.log\nlog_type error\nlog_type warning\n"
            "log_type notice\nlog_type information\nmax_queued_messages 100000\n"
            f"acl_file {directory}/acl\n"
            f"listener {broker.port} 127.0.0.1\ncafile {ca_file}\ncertfile {cert}\n"
            f"keyfile {key}\nrequire_certificate true\nuse_identity_as_username true\n"
            "tls_version tlsv1.2\n"
        )
        return broker

    @property
    def url(self) -> str:
        return f"mqtts://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.process = subprocess.Popen(
            [MOSQUITTO, "-c", str(self.directory / "mosquitto.conf")],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        wait_until_listening(self.process, self.port, describe=self.log)

    def stop(self) -> None:
        stop_process(self.process)
        self.process = None

    def log(self) -> str:
        path = self.directory / "mosquitto.log"
        return path.read_text(errors="replace") if path.exists() else ""


class Subscriber:
    """The platform's side: a persistent QoS 1 session that survives broker restarts."""

    def __init__(self, broker: Mosquitto, topics: list[str], client_id: str = "platform-test") -> None:
        import paho.mqtt.client as mqtt
        from paho.mqtt.enums import CallbackAPIVersion

        self.messages: list[tuple[str, bytes]] = []
        self._lock = threading.Lock()
        key, cert = broker.ca.write_pair(broker.directory, "platform", PLATFORM_CN)
        ctx = ssl.create_default_context(cafile=str(broker.ca_file))
        ctx.load_cert_chain(cert, key)
        client: Any = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2,
                                  client_id=client_id, clean_session=False,
                                  protocol=mqtt.MQTTv311)
        client.tls_set_context(ctx)
        client.reconnect_delay_set(0.1, 0.5)
        self._subscribed = threading.Event()
        acked: set[int] = set()

        def on_connect(c: Any, _u: Any, _f: Any, _rc: Any, _p: Any) -> None:
            acked.clear()
            for topic in topics:
                c.subscribe(topic, qos=1)

        def on_subscribe(_c: Any, _u: Any, mid: int, *_args: Any) -> None:
            acked.add(mid)
            if len(acked) >= len(topics):  # every topic, not just the first
                self._subscribed.set()

        def on_message(_c: Any, _u: Any, msg: Any) -> None:
            with self._lock:
                self.messages.append((msg.topic, bytes(msg.payload)))

        client.on_connect, client.on_message, client.on_subscribe = on_connect, on_message, on_subscribe
        client.connect("127.0.0.1", broker.port, 30)
        client.loop_start()
        self.client = client
        assert self._subscribed.wait(10), "the platform subscriber did not subscribe"

    def received(self, suffix: str = "") -> list[tuple[str, bytes]]:
        with self._lock:
            return [m for m in self.messages if m[0].endswith(suffix)]

    def wait_for(self, count: int, suffix: str = "", timeout: float = 15) -> list[tuple[str, bytes]]:
        """What arrived on topics ending in ``suffix``, once ``count`` have (or ``timeout`` passed):
        a message the broker acknowledged to its publisher may still be on its way here."""
        deadline = time.monotonic() + timeout
        while len(self.received(suffix)) < count and time.monotonic() < deadline:
            time.sleep(0.02)
        return self.received(suffix)

    def publish(self, topic: str, payload: bytes) -> None:
        self.client.publish(topic, payload, qos=1).wait_for_publish(10)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
