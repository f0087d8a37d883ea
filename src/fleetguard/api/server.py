"""Run the operator API and the device endpoint in one process, one event loop."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import multiprocessing.process
import signal
import socket
import ssl
from collections.abc import Coroutine, Generator
from typing import Any

import uvicorn
from uvicorn.config import create_ssl_context
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from fleetguard.api import scan_jobs
from fleetguard.api.app import create_app
from fleetguard.api.connection_limits import (
    DEVICE_ENDPOINT,
    OPERATOR_API,
    ConnectionGuard,
    GuardedServer,
    ListenerLimits,
    fit_to_open_files,
)
from fleetguard.api.device_app import create_device_app
from fleetguard.api.tls_peer import peer_cert_protocol
from fleetguard.auditlog import (
    HEAD_EXPORT_EVERY_S,
    exported_head_path,
    run_head_exporter,
    syslog_address_from_env,
)
from fleetguard.core.config import Settings
from fleetguard.core.errors import ConfigurationError, ValidationFailedError
from fleetguard.core.runtime import tune_gc_for_service
from fleetguard.identity import service as identity
from fleetguard.identity.ca import open_installation_ca
from fleetguard.install import open_installation_database
from fleetguard.keys import MasterKey, load_master_key
from fleetguard.pki import FleetCA
from fleetguard.store import Database
from fleetguard.telemetry import IngestService
from fleetguard.telemetry.mqtt_consumer import MqttConsumer, MqttSettings

STRONG_CIPHERS = "ECDHE+AESGCM:ECDHE+CHACHA20"
CRL_CHECK_EVERY_S = 300
SCAN_SCHEDULER_EVERY_S = 30
log = logging.getLogger("fleetguard.server")


class _Server(GuardedServer):
    """Signals are handled once for both servers, below."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


def _tls_context(settings: Settings, client_ca: str | None = None) -> ssl.SSLContext:
    """Our TLS: 1.2+, strong ciphers; client certificates checked against ``client_ca``."""
    context = create_ssl_context(
        certfile=settings.server_cert_file, keyfile=settings.server_key_file, password=None,
        ssl_version=ssl.PROTOCOL_TLS_SERVER,
        cert_reqs=ssl.CERT_OPTIONAL if client_ca else ssl.CERT_NONE, ca_certs=client_ca,
        ciphers=STRONG_CIPHERS,
    )
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


def _server(
    app: Any, host: str, port: int, *, name: str, limits: ListenerLimits,
    tls: ssl.SSLContext | None, http: type[asyncio.Protocol] = HttpToolsProtocol,
) -> _Server:
    """uvicorn with no server header, no access log, and a connection guard of its own.

    The guard accepts, counts, then starts TLS with a short handshake timeout, so uvicorn
    itself is given no TLS. See connection_limits.
    """
    config = uvicorn.Config(
        app, host=host, port=port, http=http, ws="none", log_config=None,
        access_log=False, server_header=False, proxy_headers=False,
        timeout_keep_alive=max(1, round(limits.idle_timeout_s)),
    )
    config.load()
    return _Server(config, guard=ConnectionGuard(name, limits), tls=tls)


def _device_server(
    db: Database, ca: FleetCA, settings: Settings, host: str, port: int,
    ingest: IngestService | None = None, limits: ListenerLimits = DEVICE_ENDPOINT,
) -> _Server:
    device_app = create_device_app(db, ca, ingest=ingest)
    tls = _tls_context(settings, client_ca=str(ca.bundle_path))
    device_app.state.device_ctx.ssl_context = tls
    return _server(device_app, host, port, name="device endpoint", limits=limits, tls=tls,
                   http=peer_cert_protocol())


def _run_loop(main: Coroutine[Any, Any, None]) -> None:
    """Run on uvloop when it is installed (faster TLS and socket work), else asyncio's loop."""
    try:
        import uvloop
    except ImportError:
        asyncio.run(main)
        return
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(main)


def _reuse_port_socket(host: str, port: int) -> socket.socket:
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


def run_device_worker(settings: Settings, host: str, port: int, log_format: str,
                      log_level: str, limits: ListenerLimits = DEVICE_ENDPOINT) -> None:
    """An extra device-endpoint process (``serve --device-workers N``); limits per process."""
    from fleetguard.core.logging import configure_logging

    configure_logging(log_format, log_level)
    [limits] = fit_to_open_files([limits])
    db = open_installation_database(settings, migrate=False)
    ca = open_installation_ca(settings, load_master_key(settings))
    # The main process sweeps and compacts; every process re-reads device state per batch.
    ingest = IngestService(db, sweep_every_s=None, compact_every_s=None, exclusive_writer=False)
    server = _device_server(db, ca, settings, host, port, ingest, limits)
    sock = _reuse_port_socket(host, port)
    signal.signal(signal.SIGTERM, lambda *_: setattr(server, "should_exit", True))
    signal.signal(signal.SIGINT, lambda *_: setattr(server, "should_exit", True))
    tune_gc_for_service()
    try:
        _run_loop(server.serve(sockets=[sock]))
    finally:
        ingest.stop()
        ca.close()
        db.dispose()


def _mqtt_consumer(settings: Settings, ingest: IngestService, broker: str) -> MqttConsumer:
    """Telemetry from `fleetguard broker`, read as the platform's own service identity."""
    host, _, port = broker.removeprefix("mqtts://").rpartition(":")
    if not host or not port.isdigit():
        raise ValidationFailedError("--mqtt-broker is HOST:PORT", field="mqtt-broker")
    service = settings.data_dir / "broker" / "service"
    cert, key = service / "service.crt", service / "service.key"
    if not cert.exists() or not key.exists():
        raise ConfigurationError(
            f"no broker service identity in {service}: run `fleetguard broker` first"
        )
    return MqttConsumer(ingest, MqttSettings(
        host=host.strip("[]"), port=int(port), ca_file=settings.data_dir / "ca" / "bundle.pem",
        cert_file=cert, key_file=key,
    ))


def run_servers(
    settings: Settings, *, host: str, port: int, device_port: int, insecure_http: bool,
    device_workers: int = 1, log_format: str = "text", log_level: str = "info",
    mqtt_broker: str | None = None, operator_limits: ListenerLimits = OPERATOR_API,
    device_limits: ListenerLimits = DEVICE_ENDPOINT, master_key: MasterKey | None = None,
) -> None:
    # Both listeners' connections must fit in this process's open files together.
    fitted = fit_to_open_files(
        [operator_limits, device_limits] if device_port else [operator_limits]
    )
    operator_limits, fitted_device = fitted[0], fitted[-1]
    master = master_key or load_master_key(settings)
    db = open_installation_database(settings, master_key=master)
    ca = open_installation_ca(settings, master)
    api = create_app(settings, db=db, master_key=master, ca=ca, tls=not insecure_http)
    # The audit log's signed head goes to the data dir and to syslog: an anchor off the box.
    head_syslog = syslog_address_from_env()
    servers = [_server(
        api, host, port, name="operator API", limits=operator_limits,
        tls=None if insecure_http else _tls_context(settings),
    )]
    serve_args: list[dict[str, object]] = [{}]
    workers: list[multiprocessing.process.BaseProcess] = []
    # Telemetry is stored by one writer thread per process, in batches.
    # With several device processes, a device's reports may reach any of them.
    ingest = IngestService(db, exclusive_writer=device_workers <= 1)
    ingest.start()
    consumer = _mqtt_consumer(settings, ingest, mqtt_broker) if mqtt_broker else None
    if consumer is not None:
        consumer.start()
    if device_port:
        servers.append(_device_server(db, ca, settings, host, device_port, ingest,
                                      fitted_device))
        if device_workers > 1:
            serve_args.append({"sockets": [_reuse_port_socket(host, device_port)]})
            spawn = multiprocessing.get_context("spawn")
            for _ in range(device_workers - 1):
                process = spawn.Process(
                    target=run_device_worker,
                    args=(settings, host, device_port, log_format, log_level, device_limits),
                    daemon=True,
                )
                process.start()
                workers.append(process)
        else:
            serve_args.append({})
    scheme = "http" if insecure_http else "https"
    print(f"fleetguard operator API on {scheme}://{host}:{port}", flush=True)
    if device_port:
        print(f"fleetguard device endpoint on https://{host}:{device_port} (mutual TLS)",
              flush=True)

    def refresh_crls() -> None:
        with db.session() as session:
            if identity.refresh_crls_if_due(session, ca):
                log.info("republished the fleet CRLs before their nextUpdate")

    async def crl_keeper() -> None:
        while not all(server.should_exit for server in servers):
            try:
                await asyncio.to_thread(refresh_crls)
            except Exception:  # a failed refresh is retried; it must not stop the server
                log.exception("could not republish the fleet CRLs")
            for _ in range(CRL_CHECK_EVERY_S):
                if all(server.should_exit for server in servers):
                    return
                await asyncio.sleep(1)

    async def scan_scheduler() -> None:
        """Start due scheduled scans; mark scans cut off by a restart as failed."""
        while not all(server.should_exit for server in servers):
            try:
                await asyncio.to_thread(scan_jobs.run_due_scans, db)
            except Exception:  # retried next round; it must not stop the server
                log.exception("scheduled scans could not start")
            for _ in range(SCAN_SCHEDULER_EVERY_S):
                if all(server.should_exit for server in servers):
                    return
                await asyncio.sleep(1)

    async def serve_all() -> None:
        loop = asyncio.get_running_loop()

        def stop() -> None:
            for server in servers:
                server.should_exit = True

        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop)
        keeper = asyncio.create_task(crl_keeper())
        scheduler = asyncio.create_task(scan_scheduler())
        head_exporter = asyncio.create_task(run_head_exporter(
            db, exported_head_path(settings.data_dir), every_s=HEAD_EXPORT_EVERY_S,
            stop=lambda: all(server.should_exit for server in servers),
            syslog_address=head_syslog,
        ))
        await asyncio.gather(
            *(server.serve(**kw) for server, kw in zip(servers, serve_args, strict=True))  # type: ignore[arg-type]
        )
        keeper.cancel()
        scheduler.cancel()
        await head_exporter  # its last export records the head as the server stops

    try:
        _run_loop(serve_all())
    finally:
        for worker in workers:
            worker.terminate()
        for worker in workers:
            worker.join(timeout=10)
        if consumer is not None:
            consumer.stop()
        ingest.stop()  # everything accepted is stored before we exit
        ca.close()
        db.dispose()
