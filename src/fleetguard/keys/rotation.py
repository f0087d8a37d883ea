"""Re-encrypt every sealed secret in the database under a new master key."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from fleetguard.core.clock import utcnow
from fleetguard.keys.envelope import MasterKey, rewrap_secret
from fleetguard.store.tables import SecretRow


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
