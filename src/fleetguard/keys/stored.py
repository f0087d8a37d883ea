"""Secrets sealed under the master key and kept in the database: the only code over their
table, so every stored secret is sealed, bound to its context, and rewrapped on rotation."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from fleetguard.core.clock import utcnow
from fleetguard.keys.envelope import MasterKey, open_secret, rewrap_secret, seal_secret
from fleetguard.store.tables.secrets import SecretRow


def store_sealed_secret(
    session: Session, master: MasterKey, *, purpose: str, context: str, secret: bytes
) -> int:
    """Seal ``secret`` under ``master``, bound to ``context`` (its owner), and add it;
    returns its id, for an owner that keeps a reference to it."""
    row = SecretRow(
        purpose=purpose, context=context,
        sealed=seal_secret(master, secret, context.encode()), created_at=utcnow(),
    )
    session.add(row)
    session.flush()
    return row.id


def open_stored_secret(
    session: Session, master: MasterKey, secret_id: int, *, context: str
) -> bytes | None:
    """One stored secret, opened only if it was sealed for ``context``; None if absent."""
    row = session.get(SecretRow, secret_id)
    return None if row is None else open_secret(master, row.sealed, context.encode())


def set_stored_secret_purpose(session: Session, secret_id: int, purpose: str) -> None:
    row = session.get(SecretRow, secret_id)
    if row is not None:
        row.purpose = purpose


def delete_stored_secret(session: Session, secret_id: int) -> None:
    row = session.get(SecretRow, secret_id)
    if row is not None:
        session.delete(row)


def open_stored_secrets(
    session: Session, master: MasterKey, *, purpose: str
) -> list[tuple[str, bytes]]:
    """Every stored secret of ``purpose`` as (context, plaintext), oldest first."""
    rows = session.execute(
        select(SecretRow.context, SecretRow.sealed)
        .where(SecretRow.purpose == purpose).order_by(SecretRow.id)
    )
    return [(context, open_secret(master, sealed, context.encode())) for context, sealed in rows]


def rewrap_stored_secrets(session: Session, old: MasterKey, new: MasterKey) -> int:
    """Rewrap in the caller's transaction: either every secret moves to ``new`` or none."""
    count = 0
    now = utcnow()
    for row in session.execute(select(SecretRow).order_by(SecretRow.id)).scalars():
        row.sealed = rewrap_secret(old, new, row.sealed, row.context.encode())
        row.rotated_at = now
        count += 1
    session.flush()
    return count
