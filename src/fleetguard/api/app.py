"""The composition root of the HTTP server: ``create_app(settings)``."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.openapi.utils import get_openapi
from fastapi.routing import iter_route_contexts

from fleetguard import __version__
from fleetguard.api.authz import SESSION_COOKIE
from fleetguard.api.context import AppContext
from fleetguard.api.errors import install_error_handlers
from fleetguard.api.metrics import ApiMetrics
from fleetguard.api.middleware import (
    AccessLogMiddleware,
    BodyLimitMiddleware,
    JsonDepthMiddleware,
    SecurityHeadersMiddleware,
    StreamErrorMiddleware,
)
from fleetguard.api.routers import audit, auth, devices, operators, scans, system, tokens
from fleetguard.api.routers.devices import IMPORT_PATH, MAX_CSV_BYTES
from fleetguard.api.schemas import error_responses
from fleetguard.core.config import Settings
from fleetguard.dashboard import install_dashboard
from fleetguard.install import open_installation_database
from fleetguard.keys import MasterKey, load_master_key
from fleetguard.pki import FleetCA
from fleetguard.store import Database

#: Routers whose every route needs a permission (401 without credentials, 403 without
#: the permission); the auth router's login steps are public, and the system router's
#: routes document their own errors.
PROTECTED_ROUTERS = (
    operators.router, tokens.router, audit.router, devices.router, scans.router,
)
#: Errors any route may answer: bad input, a missing or conflicting resource, too many
#: requests (schemas.ERROR_STATUSES says what each means).
COMMON_ERRORS = (400, 404, 409, 413, 422, 429)
PROTECTED_ERRORS = (401, 403)
SECURITY_SCHEMES: dict[str, Any] = {
    "bearerToken": {"type": "http", "scheme": "bearer",
                    "description": "an API token: fleetguard token create, POST /api/v1/tokens"},
    "session": {"type": "apiKey", "in": "cookie", "name": SESSION_COOKIE,
                "description": "the session of a login (unsafe methods also need the "
                               "X-CSRF-Token header)"},
}


def _needs_permission(dependant: Dependant) -> bool:
    """Whether a route depends on ``requires(...)`` (authz marks it with the permission)."""
    return any(
        getattr(dep.call, "permission", None) is not None or _needs_permission(dep)
        for dep in dependant.dependencies
    )


def _document(app: FastAPI) -> None:
    """Security schemes, and the security of every route that needs a permission."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = get_openapi(
            title=app.title, version=app.version, routes=app.routes,
            description="The fleetguard operator API. Errors are "
                        '{"error": {"code", "message", "field"?}} with a stable code.',
        )
        schema.setdefault("components", {})["securitySchemes"] = SECURITY_SCHEMES
        paths = schema.get("paths", {})
        for route in iter_route_contexts(app.routes):
            dependant = getattr(route.original_route, "dependant", None)
            if dependant is None or not _needs_permission(dependant):
                continue
            for method in route.methods or ():
                operation = paths.get(route.path_format or "", {}).get(method.lower())
                if operation is not None:
                    operation["security"] = [{"bearerToken": []}, {"session": []}]
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


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
    master_key = master_key or load_master_key(settings)
    app.state.ctx = AppContext(
        settings=settings,
        # The installation's database carries the audit keys: every audited change is keyed.
        db=db or open_installation_database(settings, master_key=master_key),
        master_key=master_key,
        metrics=metrics,
        ca=ca,
        secure_cookies=True,
    )
    app.include_router(system.router)
    app.include_router(auth.router, responses=error_responses(*COMMON_ERRORS))
    for router in PROTECTED_ROUTERS:
        app.include_router(router, responses=error_responses(*COMMON_ERRORS, *PROTECTED_ERRORS))
    _document(app)
    install_error_handlers(app)
    install_dashboard(app)
    # Innermost first: errors of streamed bodies and over-deep JSON are answered inside
    # the log, the security headers and the body limit.
    app.add_middleware(StreamErrorMiddleware)
    app.add_middleware(JsonDepthMiddleware)
    app.add_middleware(AccessLogMiddleware, metrics=metrics)
    app.add_middleware(SecurityHeadersMiddleware, hsts=tls)
    app.add_middleware(BodyLimitMiddleware, larger={IMPORT_PATH: MAX_CSV_BYTES})
    return app
