"""The operator API's surface: its routers, the errors each documents, and its OpenAPI
document's security. ``fleetguard.server.operator_app`` assembles the app around it."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.openapi.utils import get_openapi
from fastapi.routing import iter_route_contexts

from fleetguard.api.authz import SESSION_COOKIE
from fleetguard.api.errors import install_error_handlers
from fleetguard.api.routers import (
    alarms,
    audit,
    auth,
    detection_rules,
    devices,
    notifications,
    operators,
    scans,
    system,
    telemetry,
    tokens,
)
from fleetguard.api.schemas import error_responses

#: Routers whose every route needs a permission (401 without credentials, 403 without
#: the permission); the auth router's login steps are public, and the system router's
#: routes document their own errors.
PROTECTED_ROUTERS = (
    operators.router, tokens.router, audit.router, devices.router, scans.router,
    telemetry.router, alarms.router, detection_rules.router, notifications.router,
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


def install_operator_api(app: FastAPI) -> None:
    """The API's routers, each with the errors it may answer, its OpenAPI document and its
    JSON error handlers."""
    app.include_router(system.router)
    app.include_router(auth.router, responses=error_responses(*COMMON_ERRORS))
    for router in PROTECTED_ROUTERS:
        app.include_router(router, responses=error_responses(*COMMON_ERRORS, *PROTECTED_ERRORS))
    _document(app)
    install_error_handlers(app)
