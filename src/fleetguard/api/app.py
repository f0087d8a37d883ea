"""The composition root of the HTTP server: ``create_app(settings)``."""

from __future__ import annotations

from fastapi import FastAPI

from fleetguard import __version__
from fleetguard.api.context import AppContext
from fleetguard.api.errors import install_error_handlers
from fleetguard.api.metrics import ApiMetrics
from fleetguard.api.middleware import (
    AccessLogMiddleware,
    BodyLimitMiddleware,
    SecurityHeadersMiddleware,
)
from fleetguard.api.routers import audit, auth, devices, operators, scans, system, tokens
from fleetguard.api.routers.devices import IMPORT_PATH, MAX_CSV_BYTES
from fleetguard.core.config import Settings
from fleetguard.dashboard import install_dashboard
from fleetguard.keys import MasterKey, load_master_key
from fleetguard.pki import FleetCA
from fleetguard.store import Database, open_database

ROUTERS = (
    system.router, auth.router, operators.router, tokens.router, audit.router, devices.router,
    scans.router,
)


def create_app(
    settings: Settings,
    *,
    db: Database | None = None,
    master_key: MasterKey | None = None,
    ca: FleetCA | None = None,
    tls: bool = True,
) -> FastAPI:
    app = FastAPI(
        title="fleetguard",
        version=__version__,
        openapi_url=None,  # served behind authentication by the system router
        docs_url=None,
        redoc_url=None,
    )
    metrics = ApiMetrics()
    app.state.ctx = AppContext(
        settings=settings,
        db=db or open_database(settings.database_url),
        master_key=master_key or load_master_key(settings),
        metrics=metrics,
        ca=ca,
        secure_cookies=True,
    )
    for router in ROUTERS:
        app.include_router(router)
    install_error_handlers(app)
    install_dashboard(app)
    app.add_middleware(AccessLogMiddleware, metrics=metrics)
    app.add_middleware(SecurityHeadersMiddleware, hsts=tls)
    app.add_middleware(BodyLimitMiddleware, larger={IMPORT_PATH: MAX_CSV_BYTES})
    return app
