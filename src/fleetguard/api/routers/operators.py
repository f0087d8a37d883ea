"""Operators and the caller's own account."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends

from fleetguard.api.authz import requires
from fleetguard.api.context import AppContext, get_context
from fleetguard.api.schemas import OperatorCreate, OperatorOut, PasswordChange
from fleetguard.operators import Permission, Principal
from fleetguard.operators import service as operators

router = APIRouter(prefix="/api/v1", tags=["operators"])
Ctx = Annotated[AppContext, Depends(get_context)]


@router.get("/me")
def me(
    ctx: Ctx, principal: Annotated[Principal, Depends(requires(Permission.SELF))]
) -> OperatorOut:
    with ctx.db.session() as session:
        return OperatorOut.of(operators.get_operator(session, principal.username))


@router.post("/me/password", status_code=204)
def change_own_password(
    body: PasswordChange, ctx: Ctx,
    principal: Annotated[Principal, Depends(requires(Permission.SELF))],
) -> None:
    """Change your own password (proves the current one); ends every session."""
    with ctx.db.session() as session:
        operators.change_own_password(
            session, principal, current_password=body.current_password,
            new_password=body.new_password,
        )


@router.get("/operators")
def list_operators(
    ctx: Ctx, _: Annotated[Principal, Depends(requires(Permission.OPERATORS_READ))]
) -> list[OperatorOut]:
    with ctx.db.session() as session:
        return [OperatorOut.of(op) for op in operators.list_operators(session)]


@router.post("/operators", status_code=201)
def create_operator(
    body: OperatorCreate, ctx: Ctx,
    principal: Annotated[Principal, Depends(requires(Permission.OPERATORS_WRITE))],
) -> OperatorOut:
    with ctx.db.session() as session:
        op = operators.create_operator(
            session, username=body.username, password=body.password, role=body.role,
            actor=principal.actor, issuer=principal,
        )
    return OperatorOut.of(op)


@router.get("/operators/{username}")
def get_operator(
    username: str, ctx: Ctx,
    _: Annotated[Principal, Depends(requires(Permission.OPERATORS_READ))],
) -> OperatorOut:
    with ctx.db.session() as session:
        return OperatorOut.of(operators.get_operator(session, username))


def _set_disabled(
    ctx: AppContext, username: str, disabled: bool, principal: Principal
) -> OperatorOut:
    with ctx.db.session() as session:
        return OperatorOut.of(
            operators.set_operator_disabled(
                session, username=username, disabled=disabled, actor=principal.actor,
                issuer=principal,
            )
        )


@router.post("/operators/{username}/disable")
def disable_operator(
    username: str, ctx: Ctx,
    principal: Annotated[Principal, Depends(requires(Permission.OPERATORS_WRITE))],
) -> OperatorOut:
    return _set_disabled(ctx, username, True, principal)


@router.post("/operators/{username}/enable")
def enable_operator(
    username: str, ctx: Ctx,
    principal: Annotated[Principal, Depends(requires(Permission.OPERATORS_WRITE))],
) -> OperatorOut:
    return _set_disabled(ctx, username, False, principal)


@router.post("/operators/{username}/reset-mfa")
def reset_operator_mfa(
    username: str, ctx: Ctx,
    principal: Annotated[Principal, Depends(requires(Permission.OPERATORS_WRITE))],
) -> OperatorOut:
    with ctx.db.session() as session:
        return OperatorOut.of(
            operators.reset_mfa(
                session, username=username, actor=principal.actor, issuer=principal
            )
        )
