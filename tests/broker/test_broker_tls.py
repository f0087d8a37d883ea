"""The broker presents a TLS identity of its own, and takes a renewed one without a restart."""

from __future__ import annotations

import socket
import ssl
import time
from datetime import timedelta

from cryptography import x509

from fleetguard.broker._identities import TLS_CERT_VALIDITY, renew_tls_identity
from fleetguard.core.clock import utcnow
from tests.broker.conftest import Client, Fleet


def _presented(fleet: Fleet) -> x509.Certificate:
    files = fleet.files
    ctx = ssl.create_default_context(cafile=str(files.ca_bundle))
    ctx.load_cert_chain(str(files.service_cert), str(files.service_key))
    with (socket.create_connection((files.connect_host, files.port), timeout=5) as raw,
          ctx.wrap_socket(raw, server_hostname=files.connect_host) as tls):
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der)


def test_the_broker_presents_its_own_certificate_not_the_servers(fleet: Fleet) -> None:
    presented = _presented(fleet)
    own = x509.load_pem_x509_certificate(fleet.files.tls_cert.read_bytes())
    server = x509.load_pem_x509_certificate(
        (fleet.tmp / "data" / "tls" / "server.crt").read_bytes())
    assert presented == own
    assert presented.public_key() != server.public_key()


def test_a_renewed_certificate_is_taken_on_sighup_and_sessions_stay(fleet: Fleet) -> None:
    session = Client(fleet.files, fleet.files.service_cert, fleet.files.service_key)
    assert session.connect()
    try:
        old = _presented(fleet)
        due = utcnow() + TLS_CERT_VALIDITY - timedelta(days=20)
        assert renew_tls_identity(fleet.files, fleet.ca, now=due)
        fleet.process.reload()
        new = x509.load_pem_x509_certificate(fleet.files.tls_cert.read_bytes())
        assert new.serial_number != old.serial_number
        deadline = time.monotonic() + 5
        while _presented(fleet) != new:
            assert time.monotonic() < deadline, "the broker still presents the old certificate"
            time.sleep(0.05)
        assert session.connects == 1 and not session.gone.is_set()
    finally:
        session.close()
