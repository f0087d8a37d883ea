"""Run the operator API and the device endpoint in one process, one event loop."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import ssl
from collections.abc import Generator

import uvicorn

from fleetguard.api.app import create_app
from fleetguard.api.device_app import create_device_app
from fleetguard.api.tls_peer import PeerCertH11Protocol
from fleetguard.core.config import Settings
from fleetguard.identity import service as identity
from fleetguard.identity.ca import open_installation_ca
from fleetguard.install import open_installation_database
from fleetguard.keys import load_master_key

STRONG_CIPHERS = "ECDHE+AESGCM:ECDHE+CHACHA20"
CRL_CHECK_EVERY_S = 300
log = logging.getLogger("fleetguard.server")


class _Server(uvicorn.Server):
    """Signals are handled once for both servers, below."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


def _harden(config: uvicorn.Config) -> None:
    config.load()
    if config.ssl is not None:
        config.ssl.minimum_version = ssl.TLSVersion.TLSv1_2


def run_servers(
    settings: Settings, *, host: str, port: int, device_port: int, insecure_http: bool
) -> None:
    db = open_installation_database(settings)
    master = load_master_key(settings)
    ca = open_installation_ca(settings, master)
    tls = {
        "ssl_certfile": str(settings.server_cert_file),
        "ssl_keyfile": str(settings.server_key_file),
        "ssl_ciphers": STRONG_CIPHERS,
    }
    api = create_app(settings, db=db, master_key=master, ca=ca, tls=not insecure_http)
    common = {"host": host, "log_config": None, "access_log": False, "server_header": False,
              "proxy_headers": False}
    api_config = uvicorn.Config(api, port=port, **common, **({} if insecure_http else tls))  # type: ignore[arg-type]
    _harden(api_config)
    servers = [_Server(api_config)]
    if device_port:
        device_app = create_device_app(db, ca)
        device_config = uvicorn.Config(
            device_app, port=device_port, http=PeerCertH11Protocol,
            ssl_ca_certs=str(ca.bundle_path), ssl_cert_reqs=ssl.CERT_OPTIONAL,
            **common, **tls,  # type: ignore[arg-type]
        )
        _harden(device_config)
        device_app.state.device_ctx.ssl_context = device_config.ssl
        servers.append(_Server(device_config))
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

    async def serve_all() -> None:
        loop = asyncio.get_running_loop()

        def stop() -> None:
            for server in servers:
                server.should_exit = True

        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop)
        keeper = asyncio.create_task(crl_keeper())
        await asyncio.gather(*(server.serve() for server in servers))
        keeper.cancel()

    try:
        asyncio.run(serve_all())
    finally:
        ca.close()
        db.dispose()
