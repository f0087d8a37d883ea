"""The process's listeners: uvicorn behind a connection guard, with our TLS, on the event
loop this process runs (uvloop when installed)."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
from collections.abc import Coroutine, Generator
from typing import Any

import uvicorn
from uvicorn.config import create_ssl_context
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from fleetguard.api.device_app import create_device_app
from fleetguard.core.config import Settings
from fleetguard.pki import FleetCA
from fleetguard.server.connections.guard import ConnectionGuard
from fleetguard.server.connections.limits import DEVICE_ENDPOINT, ListenerLimits
from fleetguard.server.connections.listener import GuardedServer
from fleetguard.server.tls_peer import peer_cert_protocol
from fleetguard.store import Database
from fleetguard.telemetry import IngestService

STRONG_CIPHERS = "ECDHE+AESGCM:ECDHE+CHACHA20"


class Listener(GuardedServer):
    """One listener of the process; signals are handled once for all of them (serve)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


def tls_context(settings: Settings, client_ca: str | None = None) -> ssl.SSLContext:
    """Our TLS: 1.2+, strong ciphers; client certificates checked against ``client_ca``."""
    context = create_ssl_context(
        certfile=settings.server_cert_file, keyfile=settings.server_key_file, password=None,
        ssl_version=ssl.PROTOCOL_TLS_SERVER,
        cert_reqs=ssl.CERT_OPTIONAL if client_ca else ssl.CERT_NONE, ca_certs=client_ca,
        ciphers=STRONG_CIPHERS,
    )
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


def listener(
    app: Any, host: str, port: int, *, name: str, limits: ListenerLimits,
    tls: ssl.SSLContext | None, http: type[asyncio.Protocol] = HttpToolsProtocol,
) -> Listener:
    """uvicorn with no server header, no access log, and a connection guard of its own.

    The guard accepts, counts, then starts TLS with a short handshake timeout, so uvicorn
    itself is given no TLS. See server.connections.
    """
    config = uvicorn.Config(
        app, host=host, port=port, http=http, ws="none", log_config=None,
        access_log=False, server_header=False, proxy_headers=False,
        timeout_keep_alive=max(1, round(limits.idle_timeout_s)),
    )
    config.load()
    return Listener(config, guard=ConnectionGuard(name, limits), tls=tls)


def device_listener(
    db: Database, ca: FleetCA, settings: Settings, host: str, port: int,
    ingest: IngestService | None = None, limits: ListenerLimits = DEVICE_ENDPOINT,
) -> Listener:
    """The device endpoint: mutual TLS against the fleet's CA bundle."""
    device_app = create_device_app(db, ca, ingest=ingest)
    tls = tls_context(settings, client_ca=str(ca.bundle_path))
    return listener(device_app, host, port, name="device endpoint", limits=limits, tls=tls,
                    http=peer_cert_protocol())


def reuse_port_socket(host: str, port: int) -> socket.socket:
    """Several processes accept on one port; the kernel spreads the connections."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # The protocol must be named: asyncio sets TCP_NODELAY only on sockets whose proto is
    # IPPROTO_TCP, and accepted sockets inherit it. Without it every response waited for
    # the client's delayed ACK (~40 ms).
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def run_event_loop(main: Coroutine[Any, Any, None]) -> None:
    """Run on uvloop when it is installed (faster TLS and socket work), else asyncio's loop."""
    try:
        import uvloop
    except ImportError:
        asyncio.run(main)
        return
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(main)
