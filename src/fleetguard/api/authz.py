"""Authorization in one place.

Every route declares the permission it needs with ``Depends(requires(Permission.X))``.
The caller is found from a bearer API token or a session cookie (with a CSRF token for
unsafe methods); no credentials -> 401, credentials without the permission -> 403.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

from fastapi import Depends, Request, Response

from fleetguard.api.context import AppContext, client_address, get_context
from fleetguard.core.errors import AuthenticationError, PermissionDeniedError
from fleetguard.operators import LoginResult, Permission, Principal, tokens
from fleetguard.operators import service as operators
from fleetguard.operators.service import SESSION_ABSOLUTE

SESSION_COOKIE = "__Host-fg_session"
CSRF_COOKIE = "__Host-fg_csrf"
CSRF_HEADER = "x-csrf-token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def set_session_cookies(response: Response, result: LoginResult, *, secure: bool) -> None:
    """The cookies of a finished login, for the API's clients and the dashboard alike."""
    assert result.session_token and result.csrf_token
    max_age = int(SESSION_ABSOLUTE.total_seconds())
    response.set_cookie(SESSION_COOKIE, result.session_token, max_age=max_age, path="/",
                        secure=secure, httponly=True, samesite="strict")
    # Readable by the page's script, which echoes it in X-CSRF-Token.
    response.set_cookie(CSRF_COOKIE, result.csrf_token, max_age=max_age, path="/",
                        secure=secure, httponly=False, samesite="strict")


def sign_out(response: Response, ctx: AppContext, principal: Principal) -> None:
    """End ``principal``'s session and clear its cookies (API and dashboard logout)."""
    with ctx.db.session() as session:
        operators.end_session(session, principal)
    response.delete_cookie(SESSION_COOKIE, path="/", secure=ctx.secure_cookies, httponly=True)
    response.delete_cookie(CSRF_COOKIE, path="/", secure=ctx.secure_cookies)


def resolve_principal(request: Request, ctx: AppContext) -> Principal:
    header = request.headers.get("authorization")
    with ctx.db.session() as session:
        if header:
            scheme, _, token = header.partition(" ")
            if scheme.lower() != "bearer" or not token.strip():
                raise AuthenticationError("use 'Authorization: Bearer <token>'")
            return tokens.authenticate_api_token(
                session, token=token.strip(), source=client_address(request)
            )
        cookie = request.cookies.get(SESSION_COOKIE)
        if cookie:
            return operators.authenticate_session(
                session, session_token=cookie,
                csrf_token=request.headers.get(CSRF_HEADER),
                needs_csrf=request.method not in SAFE_METHODS,
            )
    raise AuthenticationError("authentication required")


def requires(permission: Permission) -> Callable[..., Principal]:
    def dependency(
        request: Request, ctx: Annotated[AppContext, Depends(get_context)]
    ) -> Principal:
        principal = resolve_principal(request, ctx)
        if not principal.can(permission):
            raise PermissionDeniedError(
                f"role {principal.role.value} lacks permission {permission.value}"
            )
        request.state.principal = principal
        return principal

    dependency.permission = permission  # type: ignore[attr-defined]  # read by route listings
    return dependency
