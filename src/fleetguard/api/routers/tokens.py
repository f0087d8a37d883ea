"""API tokens: your own, or everyone's for an admin."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Depends

from fleetguard.api.authz import requires
from fleetguard.api.context import AppContext, get_context
from fleetguard.api.schemas import TokenCreate, TokenIssued, TokenOut
from fleetguard.operators import Permission, Principal, tokens

router = APIRouter(prefix="/api/v1/tokens", tags=["tokens"])
Ctx = Annotated[AppContext, Depends(get_context)]


@router.get("")
def list_tokens(
    ctx: Ctx, principal: Annotated[Principal, Depends(requires(Permission.TOKENS_READ_OWN))]
) -> list[TokenOut]:
    """Your tokens; an admin sees every operator's."""
    owner = None if principal.can(Permission.TOKENS_ADMIN) else principal.username
    with ctx.db.session() as session:
        return [TokenOut.of(t) for t in tokens.list_api_tokens(session, username=owner)]


@router.post("", status_code=201)
def create_token(
    body: TokenCreate, ctx: Ctx,
    principal: Annotated[Principal, Depends(requires(Permission.TOKENS_WRITE_OWN))],
) -> TokenIssued:
    """A token for yourself, with at most the role and the lifetime of the credential you
    call with. The secret is shown only here."""
    with ctx.db.session() as session:
        issued = tokens.create_api_token(
            session, username=principal.username, name=body.name, role=body.role,
            ttl=timedelta(days=body.ttl_days), actor=principal.actor, issuer=principal,
        )
    return TokenIssued(token=issued.token, info=TokenOut.of(issued.info))


@router.delete("/{token_id}")
def revoke_token(
    token_id: str, ctx: Ctx,
    principal: Annotated[Principal, Depends(requires(Permission.TOKENS_WRITE_OWN))],
) -> TokenOut:
    owner = None if principal.can(Permission.TOKENS_ADMIN) else principal.username
    with ctx.db.session() as session:
        return TokenOut.of(
            tokens.revoke_api_token(
                session, token_id=token_id, actor=principal.actor, only_owner=owner
            )
        )
