"""Login (password, then TOTP or MFA enrollment with a QR code) and logout, as HTML forms.

The same operators service functions as the JSON login routes; the session and CSRF
cookies are the API's, so a dashboard session is an API session.
"""

from __future__ import annotations

import base64
import hmac
from typing import Annotated

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from fleetguard.api.authz import set_session_cookies, sign_out
from fleetguard.api.context import AppContext, client_address, get_context
from fleetguard.core.errors import FleetError
from fleetguard.dashboard.render import page
from fleetguard.dashboard.security import (
    LOGIN_COOKIE,
    PAGE_HEADERS,
    new_login_token,
    page_access,
    safe_next,
)
from fleetguard.operators import LoginResult, LoginStep, Permission, Principal
from fleetguard.operators import service as operators

router = APIRouter(include_in_schema=False)
Ctx = Annotated[AppContext, Depends(get_context)]
Short = Annotated[str, Form(max_length=200)]


def _qr_data_uri(svg: str) -> str:
    if "xmlns=" not in svg:
        svg = svg.replace("<svg ", '<svg xmlns="http://www.w3.org/2000/svg" ', 1)
    return "data:image/svg+xml;base64," + base64.b64encode(svg.encode()).decode()


def _form(
    request: Request, *, step: str, next_path: str, token: str, status: int = 200,
    error: str | None = None, **extra: object,
) -> HTMLResponse:
    response = page(request, "login.html", {
        "step": step, "next": next_path, "login_token": token, "error": error,
        "expired": request.query_params.get("expired") == "1", **extra,
    }, status=status)
    _set_login_cookie(response, request, token)
    return response


def _set_login_cookie(response: Response, request: Request, token: str) -> None:
    ctx: AppContext = request.app.state.ctx
    response.set_cookie(LOGIN_COOKIE, token, max_age=900, path="/", secure=ctx.secure_cookies,
                        httponly=True, samesite="strict")


def _login_token_ok(request: Request, sent: str) -> bool:
    cookie = request.cookies.get(LOGIN_COOKIE, "")
    return bool(cookie) and hmac.compare_digest(cookie.encode(), sent.encode())


def _signed_in(result: LoginResult, request: Request, response: Response) -> None:
    ctx: AppContext = request.app.state.ctx
    set_session_cookies(response, result, secure=ctx.secure_cookies)
    response.delete_cookie(LOGIN_COOKIE, path="/", secure=ctx.secure_cookies, httponly=True)


def _after_step(
    request: Request, ctx: AppContext, result: LoginResult, next_path: str, token: str
) -> Response:
    if result.step is LoginStep.DONE:
        response = RedirectResponse(safe_next(next_path), status_code=303,
                                    headers=PAGE_HEADERS)
        _signed_in(result, request, response)
        return response
    assert result.challenge
    if result.step is LoginStep.MFA_REQUIRED:
        return _form(request, step="mfa", next_path=next_path, token=token,
                     challenge=result.challenge)
    with ctx.db.session() as session:
        enrollment = operators.begin_mfa_enrollment(
            session, ctx.master_key, challenge=result.challenge
        )
    return _form(request, step="enroll", next_path=next_path, token=token,
                 challenge=result.challenge, qr=_qr_data_uri(enrollment.qr_svg),
                 secret=enrollment.secret_base32)


@router.get("/login")
def login_page(request: Request, next: str = "/") -> HTMLResponse:
    return _form(request, step="password", next_path=safe_next(next), token=new_login_token())


def _refused(request: Request, step: str, next_path: str, message: str, status: int,
             **extra: object) -> HTMLResponse:
    return _form(request, step=step, next_path=next_path, token=new_login_token(),
                 status=status, error=message, **extra)


def _form_expired(request: Request, next_path: str) -> HTMLResponse:
    """The form's login token is not this browser's (or too old): back to the password."""
    return _refused(request, "password", next_path,
                    "The login form expired; please try again.", 403)


@router.post("/login")
def login_submit(
    request: Request, ctx: Ctx, username: Short, password: Annotated[str, Form(max_length=1024)],
    login_token: Short, next: Annotated[str, Form(max_length=500)] = "/",
) -> Response:
    next_path = safe_next(next)
    if not _login_token_ok(request, login_token):
        return _form_expired(request, next_path)
    try:
        with ctx.db.session() as session:
            result = operators.login_with_password(
                session, username=username, password=password, source=client_address(request)
            )
        return _after_step(request, ctx, result, next_path, login_token)
    except FleetError as exc:
        return _refused(request, "password", next_path, exc.message, exc.http_status)


@router.post("/login/mfa")
def login_mfa(
    request: Request, ctx: Ctx, challenge: Short, code: Annotated[str, Form(max_length=64)],
    login_token: Short, next: Annotated[str, Form(max_length=500)] = "/",
) -> Response:
    next_path = safe_next(next)
    if not _login_token_ok(request, login_token):
        return _form_expired(request, next_path)
    try:
        with ctx.db.session() as session:
            result = operators.complete_mfa_login(
                session, ctx.master_key, challenge=challenge, code=code.strip(),
                source=client_address(request),
            )
        return _after_step(request, ctx, result, next_path, login_token)
    except FleetError as exc:
        # A wrong code keeps the challenge (it has its own attempt limits); an expired
        # challenge sends the operator back to the password step.
        step = "mfa" if exc.http_status in (400, 401, 422, 429) else "password"
        return _form(request, step=step, next_path=next_path, token=login_token,
                     status=exc.http_status, error=exc.message, challenge=challenge)


@router.post("/login/enroll")
def login_enroll(
    request: Request, ctx: Ctx, challenge: Short, code: Annotated[str, Form(max_length=64)],
    login_token: Short, next: Annotated[str, Form(max_length=500)] = "/",
) -> Response:
    next_path = safe_next(next)
    if not _login_token_ok(request, login_token):
        return _form_expired(request, next_path)
    try:
        with ctx.db.session() as session:
            result, codes = operators.confirm_mfa_enrollment(
                session, ctx.master_key, challenge=challenge, code=code.strip(),
                source=client_address(request),
            )
    except FleetError as exc:
        return _refused(request, "password", next_path,
                        f"{exc.message} Start again: the enrollment needs a fresh code.",
                        exc.http_status)
    response = page(request, "recovery.html", {"codes": codes, "next": next_path})
    _signed_in(result, request, response)
    return response


@router.post("/logout")
def logout(
    request: Request, ctx: Ctx,
    principal: Annotated[Principal, Depends(page_access(Permission.SELF))],
) -> Response:
    response = RedirectResponse("/login?logged_out=1", status_code=303, headers=PAGE_HEADERS)
    sign_out(response, ctx, principal)
    return response

