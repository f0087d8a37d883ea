"""a public key is bound to one certificate: unique index on device_certificates.spki_sha256

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-25 12:40:00

The enrollment path checked for the key before inserting; on PostgreSQL two concurrent
enrollments with one key could both pass that check. The unique index makes the database
refuse the second, and spares the lookup.
"""

from __future__ import annotations

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("device_certificates") as batch_op:
        batch_op.drop_index(batch_op.f("ix_device_certificates_spki_sha256"))
        batch_op.create_index(batch_op.f("ix_device_certificates_spki_sha256"),
                              ["spki_sha256"], unique=True)


def downgrade() -> None:
    with op.batch_alter_table("device_certificates") as batch_op:
        batch_op.drop_index(batch_op.f("ix_device_certificates_spki_sha256"))
        batch_op.create_index(batch_op.f("ix_device_certificates_spki_sha256"),
                              ["spki_sha256"], unique=False)
