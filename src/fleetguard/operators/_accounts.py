"""Operator rows as the rest of the package reads them (service, tokens)."""

from __future__ import annotations

import hashlib
from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from fleetguard.operators.errors import OperatorNotFoundError
from fleetguard.operators.models import Operator, Role
from fleetguard.store.tables.operators import OperatorRow

# Last use of a session or token is kept to the minute: a write on every request would
# serialise the API.
LAST_USE_GRANULARITY = timedelta(seconds=60)


def sha256_hex(value: str) -> str:
    """How session, CSRF, token, challenge and recovery secrets are stored: hashed."""
    return hashlib.sha256(value.encode()).hexdigest()


def to_operator(row: OperatorRow) -> Operator:
    return Operator(
        id=row.id, username=row.username, role=Role(row.role), disabled=row.disabled,
        mfa_enabled=row.mfa_enabled, created_at=row.created_at,
    )


def operator_row(session: Session, username: str) -> OperatorRow:
    row = session.execute(
        select(OperatorRow).where(OperatorRow.username == username.strip().lower())
    ).scalar_one_or_none()
    if row is None:
        raise OperatorNotFoundError(f"no operator named {username!r}")
    return row
