"""The operator app: the API and the dashboard on one origin, behind one set of middleware.

``fleetguard serve`` builds it once; tests build it the same way. The scan jobs and the
decommission flow are put in the app's context here, so routers and pages reach them
without importing the server.
"""

from __future__ import annotations

from fastapi import FastAPI

from fleetguard import __version__
from fleetguard.api.context import AppContext
from fleetguard.api.metrics import ApiMetrics
from fleetguard.api.middleware import (
    AccessLogMiddleware,
    BodyLimitMiddleware,
    JsonDepthMiddleware,
    SecurityHeadersMiddleware,
    StreamErrorMiddleware,
)
from fleetguard.api.operator_api import install_operator_api
from fleetguard.api.routers.devices import IMPORT_PATH, MAX_CSV_BYTES
from fleetguard.core.config import Settings
from fleetguard.dashboard import install_dashboard
from fleetguard.install import open_installation_database
from fleetguard.keys import MasterKey, load_master_key
from fleetguard.pki import FleetCA
from fleetguard.server.decommission import decommission_device
from fleetguard.server.scan_jobs import ScanJobs
from fleetguard.store import Database


def create_operator_app(
    settings: Settings,
    *,
    db: Database | None = None,
    master_key: MasterKey | None = None,
    ca: FleetCA | None = None,
    scan_jobs: ScanJobs | None = None,
    tls: bool = True,
) -> FastAPI:
    """Without ``db`` the installation's database is opened; without ``scan_jobs`` the app
    gets jobs of its own over ``db``."""
    app = FastAPI(
        title="fleetguard",
        version=__version__,
        openapi_url=None,  # served behind authentication by the system router
        docs_url=None,
        redoc_url=None,
    )
    metrics = ApiMetrics()
    master_key = master_key or load_master_key(settings)
    # The installation's database carries the audit keys: every audited change is keyed.
    db = db or open_installation_database(settings, master_key=master_key)
    app.state.ctx = AppContext(
        settings=settings,
        db=db,
        master_key=master_key,
        metrics=metrics,
        scans=scan_jobs or ScanJobs(db),
        decommission=decommission_device,
        ca=ca,
        secure_cookies=True,
    )
    install_operator_api(app)
    install_dashboard(app)
    # Innermost first: errors of streamed bodies and over-deep JSON are answered inside
    # the log, the security headers and the body limit.
    app.add_middleware(StreamErrorMiddleware)
    app.add_middleware(JsonDepthMiddleware)
    app.add_middleware(AccessLogMiddleware, metrics=metrics)
    app.add_middleware(SecurityHeadersMiddleware, hsts=tls)
    app.add_middleware(BodyLimitMiddleware, larger={IMPORT_PATH: MAX_CSV_BYTES})
    return app
