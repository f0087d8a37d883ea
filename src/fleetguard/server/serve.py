"""Run the operator API and the device endpoint in one process, one event loop, with the
work the server repeats meanwhile (CRL upkeep, scan schedules, audit head exports)."""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import multiprocessing.process
import signal
import ssl
from collections.abc import Callable, Coroutine
from typing import Any

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
from fleetguard.notify import Notifier
from fleetguard.pki import FleetCA
from fleetguard.server.alarm_notifications import notify_alarms
from fleetguard.server.background import run_periodically
from fleetguard.server.ca_reload import CaReloader, keep_ca_current
from fleetguard.server.connections.limits import (
    DEVICE_ENDPOINT,
    OPERATOR_API,
    ListenerLimits,
    fit_to_open_files,
)
from fleetguard.server.detection import start_detection
from fleetguard.server.listeners import (
    Listener,
    device_listener,
    listener,
    reuse_port_socket,
    run_event_loop,
    tls_context,
)
from fleetguard.server.operator_app import create_operator_app
from fleetguard.server.scan_jobs import ScanJobs
from fleetguard.store import Database
from fleetguard.telemetry import IngestService
from fleetguard.telemetry.mqtt_consumer import MqttConsumer, MqttSettings

CRL_CHECK_EVERY_S = 300
SCAN_SCHEDULER_EVERY_S = 30
log = logging.getLogger("fleetguard.server")

#: Work that runs beside the listeners until ``stopping()`` says they have stopped.
Job = Callable[[Callable[[], bool]], Coroutine[Any, Any, None]]


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
    server = device_listener(db, ca, settings, host, port, ingest, limits)
    sock = reuse_port_socket(host, port)
    signal.signal(signal.SIGTERM, lambda *_: setattr(server, "should_exit", True))
    signal.signal(signal.SIGINT, lambda *_: setattr(server, "should_exit", True))
    tune_gc_for_service()
    reload_ca = keep_ca_current(CaReloader(ca, [server.tls] if server.tls else []),
                                lambda: server.should_exit)
    try:
        run_event_loop(_gather(server.serve(sockets=[sock]), reload_ca))
    finally:
        ingest.stop()
        ca.close()
        db.dispose()


def mqtt_consumer(settings: Settings, ingest: IngestService, broker: str) -> MqttConsumer:
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
    scan_jobs = ScanJobs(db)
    api = create_operator_app(settings, db=db, master_key=master, ca=ca, scan_jobs=scan_jobs,
                              tls=not insecure_http)
    listeners = [listener(
        api, host, port, name="operator API", limits=operator_limits,
        tls=None if insecure_http else tls_context(settings),
    )]
    serve_args: list[dict[str, Any]] = [{}]
    workers: list[multiprocessing.process.BaseProcess] = []
    # Every report this process stores goes through detection (extra device processes
    # store theirs without: see run_device_worker).
    detection = start_detection(db)
    api.state.ctx.detection = detection
    notifier = Notifier(db, master)  # alarms to webhooks and syslog, from an outbox
    notifier.start()
    notify_alarms(detection, notifier)
    # Telemetry is stored by one writer thread per process, in batches.
    # With several device processes, a device's reports may reach any of them.
    ingest = IngestService(db, exclusive_writer=device_workers <= 1,
                           on_report=detection.observe)
    ingest.start()
    consumer = mqtt_consumer(settings, ingest, mqtt_broker) if mqtt_broker else None
    if consumer is not None:
        consumer.start()
    if device_port:
        listeners.append(device_listener(db, ca, settings, host, device_port, ingest,
                                         fitted_device))
        if device_workers > 1:
            serve_args.append({"sockets": [reuse_port_socket(host, device_port)]})
            workers = _start_device_workers(
                device_workers - 1,
                (settings, host, device_port, log_format, log_level, device_limits),
            )
        else:
            serve_args.append({})
    _announce(host, port, device_port, insecure_http)
    try:
        run_event_loop(_serve(listeners, serve_args, repeated=[
            _crl_upkeep(db, ca), _scan_scheduler(scan_jobs), _ca_reload(ca, listeners),
        ], last=_head_exports(settings, db)))
    finally:
        for worker in workers:
            worker.terminate()
        for worker in workers:
            worker.join(timeout=10)
        if consumer is not None:
            consumer.stop()
        ingest.stop()  # everything accepted is stored before we exit
        detection.stop()  # then through detection, and every device's state written
        notifier.stop()  # after its publisher: what is still queued goes to the outbox
        ca.close()
        db.dispose()


def _start_device_workers(
    count: int, args: tuple[Any, ...]
) -> list[multiprocessing.process.BaseProcess]:
    """``count`` more device-endpoint processes on the shared port (run_device_worker)."""
    spawn = multiprocessing.get_context("spawn")
    workers: list[multiprocessing.process.BaseProcess] = []
    for _ in range(count):
        process = spawn.Process(target=run_device_worker, args=args, daemon=True)
        process.start()
        workers.append(process)
    return workers


def _announce(host: str, port: int, device_port: int, insecure_http: bool) -> None:
    scheme = "http" if insecure_http else "https"
    print(f"fleetguard operator API on {scheme}://{host}:{port}", flush=True)
    if device_port:
        print(f"fleetguard device endpoint on https://{host}:{device_port} (mutual TLS)",
              flush=True)


def _crl_upkeep(db: Database, ca: FleetCA) -> Job:
    def refresh_crls() -> None:
        with db.session() as session:
            if identity.refresh_crls_if_due(session, ca):
                log.info("republished the fleet CRLs before their nextUpdate")

    return lambda stopping: run_periodically(
        refresh_crls, every_s=CRL_CHECK_EVERY_S, stopping=stopping,
        failed="could not republish the fleet CRLs",
    )


def _ca_reload(ca: FleetCA, listeners: list[Listener]) -> Job:
    """A CA rotated by another process is picked up, and trusted by the listeners that
    verify client certificates (the device endpoint's)."""
    reloader = CaReloader(ca, [server.tls for server in listeners if server.tls is not None
                               and server.tls.verify_mode is not ssl.CERT_NONE])
    return lambda stopping: keep_ca_current(reloader, stopping)


async def _gather(*work: Coroutine[Any, Any, None]) -> None:
    await asyncio.gather(*work)


def _scan_scheduler(scan_jobs: ScanJobs) -> Job:
    """Start due scheduled scans; mark scans cut off by a restart as failed."""
    return lambda stopping: run_periodically(
        scan_jobs.run_due_scans, every_s=SCAN_SCHEDULER_EVERY_S, stopping=stopping,
        failed="scheduled scans could not start",
    )


def _head_exports(settings: Settings, db: Database) -> Job:
    # The audit log's signed head goes to the data dir and to syslog: an anchor off the box.
    head_syslog = syslog_address_from_env()
    return lambda stopping: run_head_exporter(
        db, exported_head_path(settings.data_dir), every_s=HEAD_EXPORT_EVERY_S,
        stop=stopping, syslog_address=head_syslog,
    )


async def _serve(
    listeners: list[Listener], serve_args: list[dict[str, Any]], *, repeated: list[Job],
    last: Job,
) -> None:
    """Serve until SIGINT or SIGTERM. The ``repeated`` jobs are cancelled then; the ``last``
    one is awaited (the head exporter's last export records the head as the server stops)."""
    loop = asyncio.get_running_loop()

    def stopping() -> bool:
        return all(server.should_exit for server in listeners)

    def stop() -> None:
        for server in listeners:
            server.should_exit = True

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop)
    tasks = [asyncio.create_task(job(stopping)) for job in repeated]
    final = asyncio.create_task(last(stopping))
    await asyncio.gather(
        *(server.serve(**kw) for server, kw in zip(listeners, serve_args, strict=True))
    )
    for task in tasks:
        task.cancel()
    await final
