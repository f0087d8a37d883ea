"""Wiring: the dashboard's routes, its static files and its browser-facing error pages."""

from __future__ import annotations

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles

from fleetguard.api.authz import SESSION_COOKIE
from fleetguard.dashboard import alarms, devices, live, login, pages, scans
from fleetguard.dashboard.render import STATIC_DIR, page
from fleetguard.dashboard.security import (
    PAGE_HEADERS,
    LoginRequired,
    PageForbidden,
    login_url,
)

dashboard_router = APIRouter(include_in_schema=False)
dashboard_router.include_router(login.router)
dashboard_router.include_router(pages.router)
dashboard_router.include_router(devices.router)
dashboard_router.include_router(alarms.router)
dashboard_router.include_router(scans.router)
dashboard_router.include_router(live.router)


async def _login_required(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, LoginRequired)
    target = login_url(exc.next_path)
    if request.cookies.get(SESSION_COOKIE):  # there was a session: it expired or was ended
        target += "&expired=1"
    if request.headers.get("hx-request") == "true":
        return Response(status_code=401, headers={**PAGE_HEADERS, "HX-Redirect": target})
    if request.url.path == "/events" or request.url.path.endswith("/events"):
        return JSONResponse({"error": {"code": "authentication_failed",
                                       "message": "session expired"}}, status_code=401)
    return RedirectResponse(target, status_code=303, headers=PAGE_HEADERS)


async def _forbidden(request: Request, exc: Exception) -> HTMLResponse:
    assert isinstance(exc, PageForbidden)
    principal = getattr(request.state, "principal", None)
    title = "Form expired" if exc.code == "csrf_failed" else "Not allowed"
    message = ("The form's security token did not match your session; reload the page and "
               "try again." if exc.code == "csrf_failed" else exc.message)
    return page(request, "error.html", {"title": title, "message": message},
                status=403, principal=principal)


def install_dashboard(app: FastAPI) -> None:
    """Add the dashboard to the operator app: the API's origin, sessions and authorization."""
    app.include_router(dashboard_router)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="dashboard-static")
    app.add_exception_handler(LoginRequired, _login_required)
    app.add_exception_handler(PageForbidden, _forbidden)
