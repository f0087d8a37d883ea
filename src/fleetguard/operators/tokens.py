"""API tokens: minted for an operator, shown once, stored as a hash, used as bearer tokens.

A token acts for its operator with the lesser of the operator's role and its own scope,
and ends at its expiry, at revocation, or when its operator is disabled.
"""

from __future__ import annotations

import hmac
import secrets
from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from fleetguard.auditlog import append_audit_entry
from fleetguard.core.clock import utcnow
from fleetguard.core.errors import PermissionDeniedError, ValidationFailedError
from fleetguard.operators._accounts import LAST_USE_GRANULARITY, operator_row, sha256_hex
from fleetguard.operators.errors import InvalidCredentialError, OperatorNotFoundError
from fleetguard.operators.minting import ensure_may_mint
from fleetguard.operators.models import ROLE_RANK, ApiToken, IssuedToken, Principal, Role
from fleetguard.store.tables.operators import ApiTokenRow, OperatorRow

TOKEN_PREFIX = "fgt"  # noqa: S105 - a public marker, not a secret
TOKEN_DEFAULT_TTL = timedelta(days=90)
TOKEN_MAX_TTL = timedelta(days=365)


def _to_token(row: ApiTokenRow, username: str) -> ApiToken:
    return ApiToken(
        token_id=row.token_id, name=row.name, role=Role(row.role), operator=username,
        created_at=row.created_at, expires_at=row.expires_at, revoked_at=row.revoked_at,
        last_used_at=row.last_used_at, last_used_from=row.last_used_from,
    )


def create_api_token(
    session: Session,
    *,
    username: str,
    name: str,
    role: Role | None,
    ttl: timedelta | None,
    actor: str,
    issuer: Principal | None,
) -> IssuedToken:
    """A token acts for its operator with at most the operator's role, and at most the
    issuing credential's role and lifetime (a token of a token neither widens nor outlives
    it). Without a role it takes the lesser of the operator's and the issuer's."""
    owner = operator_row(session, username)
    owner_role = Role(owner.role)
    ceiling = owner_role
    if issuer is not None and ROLE_RANK[issuer.role] < ROLE_RANK[ceiling]:
        ceiling = issuer.role
    role = role or ceiling
    if ROLE_RANK[role] > ROLE_RANK[owner_role]:
        raise PermissionDeniedError(
            f"a token cannot have more rights than its operator ({owner_role.value})",
            code="token_role_too_high",
        )
    ttl = ttl or TOKEN_DEFAULT_TTL
    if ttl <= timedelta(0) or ttl > TOKEN_MAX_TTL:
        raise ValidationFailedError("token lifetime must be between 1 s and 365 days", field="ttl")
    now = utcnow()
    ensure_may_mint(issuer, what="a token", role=role, expires_at=now + ttl)
    clean_name = name.strip()
    if not 1 <= len(clean_name) <= 100:
        raise ValidationFailedError("token name must be 1-100 characters", field="name")
    token_id = secrets.token_hex(8)
    secret = secrets.token_urlsafe(32)
    row = ApiTokenRow(
        token_id=token_id, operator_id=owner.id, name=clean_name, role=role.value,
        secret_hash=sha256_hex(secret), created_at=now, expires_at=now + ttl,
    )
    session.add(row)
    session.flush()
    append_audit_entry(
        session, actor=actor, action="token.create", target=f"token:{token_id}",
        details={"operator": owner.username, "role": role.value, "name": clean_name,
                 "expires_at": row.expires_at.isoformat()},
    )
    return IssuedToken(
        token=f"{TOKEN_PREFIX}_{token_id}_{secret}", info=_to_token(row, owner.username)
    )


def list_api_tokens(session: Session, *, username: str | None = None) -> list[ApiToken]:
    query = select(ApiTokenRow, OperatorRow.username).join(
        OperatorRow, OperatorRow.id == ApiTokenRow.operator_id
    )
    if username is not None:
        query = query.where(OperatorRow.username == username.strip().lower())
    rows = session.execute(query.order_by(ApiTokenRow.created_at)).all()
    return [_to_token(token, name) for token, name in rows]


def revoke_api_token(
    session: Session, *, token_id: str, actor: str, only_owner: str | None = None
) -> ApiToken:
    found = session.execute(
        select(ApiTokenRow, OperatorRow.username)
        .join(OperatorRow, OperatorRow.id == ApiTokenRow.operator_id)
        .where(ApiTokenRow.token_id == token_id)
    ).one_or_none()
    if found is None or (only_owner is not None and found[1] != only_owner):
        raise OperatorNotFoundError(f"no token {token_id!r}", code="token_not_found")
    row, owner = found
    if row.revoked_at is None:
        row.revoked_at = utcnow()
        append_audit_entry(
            session, actor=actor, action="token.revoke", target=f"token:{token_id}",
            details={"operator": owner},
        )
    return _to_token(row, owner)


def authenticate_api_token(session: Session, *, token: str, source: str) -> Principal:
    parts = token.split("_", 2)
    invalid = InvalidCredentialError("token invalid, expired or revoked")
    if len(parts) != 3 or parts[0] != TOKEN_PREFIX or len(token) > 200:
        raise invalid
    row = session.execute(
        select(ApiTokenRow).where(ApiTokenRow.token_id == parts[1])
    ).scalar_one_or_none()
    now = utcnow()
    if row is None or not hmac.compare_digest(row.secret_hash, sha256_hex(parts[2])):
        raise invalid
    if row.revoked_at is not None or row.expires_at <= now:
        raise invalid
    owner = session.get(OperatorRow, row.operator_id)
    if owner is None or owner.disabled:
        raise invalid
    # Last use is kept to the minute (LAST_USE_GRANULARITY).
    if (
        row.last_used_at is None or now - row.last_used_at > LAST_USE_GRANULARITY
        or row.last_used_from != source[:64]
    ):
        row.last_used_at = now
        row.last_used_from = source[:64]
    # A token never outranks its operator, even if the operator was demoted later.
    role = min(Role(row.role), Role(owner.role), key=lambda r: ROLE_RANK[r])
    return Principal(
        operator_id=owner.id, username=owner.username, role=role, via=f"token:{row.token_id}",
        credential_expires_at=row.expires_at,
    )


def revoke_operator_tokens(session: Session, operator_id: int) -> list[str]:
    """Revoke every live token of an operator (who is being disabled); their ids."""
    now = utcnow()
    revoked = []
    for token in session.execute(
        select(ApiTokenRow).where(
            ApiTokenRow.operator_id == operator_id, ApiTokenRow.revoked_at.is_(None)
        )
    ).scalars():
        token.revoked_at = now
        revoked.append(token.token_id)
    return revoked
