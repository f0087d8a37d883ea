"""Login, second factor, MFA enrollment and logout. Only these and /healthz are public."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response

from fleetguard.api.authz import requires, set_session_cookies, sign_out
from fleetguard.api.context import AppContext, client_address, get_context
from fleetguard.api.schemas import (
    ChallengeRequest,
    LoginRequest,
    LoginResponse,
    MfaCodeRequest,
    MfaEnrollmentResponse,
    OperatorOut,
    error_responses,
)
from fleetguard.operators import LoginResult, LoginStep, Permission, Principal
from fleetguard.operators import service as operators

router = APIRouter(prefix="/api/v1/auth", tags=["auth"])
#: A failed step (wrong password or code, an unknown or expired challenge) is a 401.
STEP_FAILED = error_responses(401)
Ctx = Annotated[AppContext, Depends(get_context)]


def _respond(result: LoginResult, response: Response, ctx: AppContext) -> LoginResponse:
    if result.step is LoginStep.DONE:
        set_session_cookies(response, result, secure=ctx.secure_cookies)
    return LoginResponse(
        step=result.step.value, challenge=result.challenge,
        operator=OperatorOut.of(result.operator) if result.step is LoginStep.DONE else None,
        csrf_token=result.csrf_token, session_expires_at=result.session_expires_at,
    )


@router.post("/login", responses=STEP_FAILED)
def login(body: LoginRequest, request: Request, response: Response, ctx: Ctx) -> LoginResponse:
    """Password step. Answers the same for an unknown user and a wrong password."""
    with ctx.db.session() as session:
        result = operators.login_with_password(
            session, username=body.username, password=body.password,
            source=client_address(request),
        )
    return _respond(result, response, ctx)


@router.post("/mfa", responses=STEP_FAILED)
def mfa(body: MfaCodeRequest, request: Request, response: Response, ctx: Ctx) -> LoginResponse:
    """Second step: a TOTP code (each accepted once) or a single-use recovery code."""
    with ctx.db.session() as session:
        result = operators.complete_mfa_login(
            session, ctx.master_key, challenge=body.challenge, code=body.code,
            source=client_address(request),
        )
    return _respond(result, response, ctx)


@router.post("/mfa/enroll", responses=STEP_FAILED)
def mfa_enroll(body: ChallengeRequest, ctx: Ctx) -> MfaEnrollmentResponse:
    """Start MFA enrollment: a new TOTP secret as otpauth URI and QR code."""
    with ctx.db.session() as session:
        enrollment = operators.begin_mfa_enrollment(
            session, ctx.master_key, challenge=body.challenge
        )
    return MfaEnrollmentResponse(
        secret=enrollment.secret_base32, otpauth_uri=enrollment.otpauth_uri,
        qr_svg=enrollment.qr_svg,
    )


@router.post("/mfa/enroll/confirm", responses=STEP_FAILED)
def mfa_enroll_confirm(
    body: MfaCodeRequest, request: Request, response: Response, ctx: Ctx
) -> LoginResponse:
    """Finish enrollment with a code from the authenticator; returns recovery codes once."""
    with ctx.db.session() as session:
        result, codes = operators.confirm_mfa_enrollment(
            session, ctx.master_key, challenge=body.challenge, code=body.code,
            source=client_address(request),
        )
    out = _respond(result, response, ctx)
    out.recovery_codes = codes
    return out


@router.post("/logout", status_code=204, responses=error_responses(401, 403))
def logout(
    response: Response, ctx: Ctx,
    principal: Annotated[Principal, Depends(requires(Permission.SELF))],
) -> None:
    sign_out(response, ctx, principal)
