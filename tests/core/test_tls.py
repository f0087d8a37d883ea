"""The one TLS client policy: only the given CA, the server's name checked, TLS 1.2+."""

from __future__ import annotations

import socket
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from fleetguard.core.tls import client_context
from tests.telemetry.mqtt_lab import FleetCA, Pair


class _TlsServer:
    """Accepts one TLS connection at a time on loopback; records the client's certificate."""

    def __init__(self, ca: FleetCA, server: Pair, *, require_client: bool = False) -> None:
        self.context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(ca.ca_file))
        self.context.load_cert_chain(server.cert, server.key)
        self.context.verify_mode = ssl.CERT_REQUIRED if require_client else ssl.CERT_NONE
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.client_subjects: list[object] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                raw, _ = self.listener.accept()
            except OSError:
                return
            try:
                with self.context.wrap_socket(raw, server_side=True) as conn:
                    self.client_subjects.append(conn.getpeercert())
                    conn.sendall(b"ok")
            except (OSError, ssl.SSLError):
                continue

    def close(self) -> None:
        self.listener.close()


def _talk(context: ssl.SSLContext, port: int, name: str = "127.0.0.1") -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw, \
            context.wrap_socket(raw, server_hostname=name) as conn:
        return conn.recv(2)


def _fleet_ca(directory: Path) -> FleetCA:
    directory.mkdir()
    return FleetCA(directory)


@pytest.fixture
def ca(tmp_path: Path) -> FleetCA:
    return _fleet_ca(tmp_path / "fleet")


@pytest.fixture
def server(ca: FleetCA) -> Iterator[_TlsServer]:
    running = _TlsServer(ca, ca.issue("server", server=True))
    yield running
    running.close()


def test_a_server_with_a_certificate_from_the_given_ca_is_reached(ca, server):
    assert _talk(client_context(ca_file=ca.ca_file), server.port) == b"ok"


def test_the_ca_can_be_given_as_pem_text(ca, server):
    assert _talk(client_context(ca_pem=ca.ca_file.read_bytes()), server.port) == b"ok"


def test_a_server_from_another_ca_is_refused(tmp_path, server):
    other = _fleet_ca(tmp_path / "other")
    with pytest.raises(ssl.SSLCertVerificationError):
        _talk(client_context(ca_file=other.ca_file), server.port)


def test_the_systems_trusted_cas_are_not_trusted(ca):
    context = client_context(ca_file=ca.ca_file)
    assert context.cert_store_stats()["x509_ca"] == 1


def test_a_server_name_its_certificate_does_not_carry_is_refused(ca, server):
    with pytest.raises(ssl.SSLCertVerificationError):
        _talk(client_context(ca_file=ca.ca_file), server.port, name="broker.example")


def test_tls_older_than_1_2_is_never_offered(ca):
    context = client_context(ca_file=ca.ca_file)
    assert context.minimum_version >= ssl.TLSVersion.TLSv1_2
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname


def test_the_client_certificate_is_presented(ca):
    server = _TlsServer(ca, ca.issue("server", server=True), require_client=True)
    device = ca.issue("device-7")
    try:
        context = client_context(ca_file=ca.ca_file, cert_file=device.cert, key_file=device.key)
        assert _talk(context, server.port) == b"ok"
        assert server.client_subjects[0]["subject"] == ((("commonName", "device-7"),),)
    finally:
        server.close()


@pytest.mark.parametrize("kwargs", [{}, {"ca_file": "a", "ca_pem": "b"}])
def test_exactly_one_ca_must_be_given(kwargs):
    with pytest.raises(ValueError, match="one of the two"):
        client_context(**kwargs)


def test_a_key_without_its_certificate_is_refused(ca):
    with pytest.raises(ValueError, match="needs its certificate"):
        client_context(ca_file=ca.ca_file, key_file="device.key")
