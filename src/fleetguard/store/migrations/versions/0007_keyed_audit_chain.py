"""the audit chain is keyed: audit_log.key_id names the audit key of each entry

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-27 10:00:00

Entries written from now on carry an HMAC-SHA256 under a key derived from the master key
(``key_id`` is that master key's id); entries already in the table keep their plain
SHA-256 and a NULL ``key_id``. The migration has no key, so it changes no entry: the
first start with the master key writes a keyed checkpoint entry over the unkeyed prefix
(see fleetguard.auditlog.keyring), after which that prefix is covered too.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("audit_log") as batch_op:
        batch_op.add_column(sa.Column("key_id", sa.String(length=16), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("audit_log") as batch_op:
        batch_op.drop_column("key_id")
