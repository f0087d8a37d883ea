"""Who may see a dashboard page: the API's own authorization, answered the browser's way.

Every page declares its permission with ``Depends(page_access(Permission.X))``. Safe
methods go through the API's ``requires(...)`` unchanged; unsafe ones (form posts) accept
only the session cookie and check the CSRF token sent in the form's ``csrf_token`` field
(or the ``X-CSRF-Token`` header, as htmx sends it) against the session, through the same
operators service. No session -> a redirect to /login; a missing permission or a bad CSRF
token -> an HTML 403 page.
"""

from __future__ import annotations

import secrets
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Annotated
from urllib.parse import quote

from fastapi import Depends, Request
from starlette.concurrency import run_in_threadpool

from fleetguard.api.authz import CSRF_COOKIE, CSRF_HEADER, SAFE_METHODS, SESSION_COOKIE, requires
from fleetguard.api.context import AppContext, get_context
from fleetguard.core.errors import AuthenticationError, PermissionDeniedError
from fleetguard.operators import Permission, Principal
from fleetguard.operators import service as operators

# Only same-origin scripts, styles and images (plus data: images for the MFA QR code).
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)
PAGE_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-store",
}
# A pre-session double-submit token against login CSRF (logging a victim into an
# attacker's account): set on GET /login, echoed by the login forms.
LOGIN_COOKIE = "__Host-fg_login"
CSRF_FIELD = "csrf_token"


class LoginRequired(Exception):
    """No valid session: the handler redirects the browser to the login page."""

    def __init__(self, next_path: str) -> None:
        super().__init__(next_path)
        self.next_path = next_path


class PageForbidden(Exception):
    def __init__(self, message: str, code: str) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


def safe_next(path: str | None) -> str:
    """Only a local absolute path may be a post-login destination (no open redirect)."""
    if not path or not path.startswith("/") or path.startswith("//") or "\\" in path:
        return "/"
    if path.startswith(("/login", "/logout")):
        return "/"
    return path


def login_url(next_path: str) -> str:
    return "/login?next=" + quote(safe_next(next_path), safe="/")


def _session_principal(
    request: Request, ctx: AppContext, permission: Permission, csrf_token: str | None
) -> Principal:
    cookie = request.cookies.get(SESSION_COOKIE)
    if not cookie:
        raise AuthenticationError("authentication required")
    with ctx.db.session() as session:
        principal = operators.authenticate_session(
            session, session_token=cookie, csrf_token=csrf_token, needs_csrf=True
        )
    if not principal.can(permission):
        raise PermissionDeniedError(
            f"role {principal.role.value} lacks permission {permission.value}"
        )
    return principal


def page_access(permission: Permission) -> Callable[..., Awaitable[Principal]]:
    check = requires(permission)

    async def dependency(
        request: Request, ctx: Annotated[AppContext, Depends(get_context)]
    ) -> Principal:
        call: Callable[[], Principal]
        if request.method in SAFE_METHODS:
            call = partial(check, request, ctx)
        else:
            form = await request.form()
            field = form.get(CSRF_FIELD)
            token = field if isinstance(field, str) and field else None
            call = partial(_session_principal, request, ctx, permission,
                           token or request.headers.get(CSRF_HEADER))
        try:
            principal = await run_in_threadpool(call)
        except AuthenticationError as exc:
            # after login, come back to the page (a form post's URL has no page)
            back = request.url.path if request.method in SAFE_METHODS else "/"
            raise LoginRequired(back) from exc
        except PermissionDeniedError as exc:
            raise PageForbidden(exc.message, exc.code) from exc
        request.state.principal = principal
        return principal

    dependency.permission = permission  # type: ignore[attr-defined]  # read by route listings
    return dependency


def csrf_token_of(request: Request) -> str:
    """The session's CSRF token, as the browser holds it in its cookie, for hidden fields."""
    return request.cookies.get(CSRF_COOKIE, "")


def new_login_token() -> str:
    return secrets.token_urlsafe(32)
