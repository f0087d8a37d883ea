"""device registry and identity

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25 09:25:44.776414
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:

    op.create_table(
        "claim_batches",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("claim_serial_hex", sa.String(length=64), nullable=False),
        sa.Column("not_after", sa.DateTime(timezone=True), nullable=False),
        sa.Column("labels", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_claim_batches")),
        sa.UniqueConstraint("claim_serial_hex", name=op.f("uq_claim_batches_claim_serial_hex")),
        sa.UniqueConstraint("name", name=op.f("uq_claim_batches_name")),
    )
    op.create_table(
        "device_groups",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("kind", sa.String(length=10), nullable=False),
        sa.Column("label_query", sa.String(length=500), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_device_groups")),
        sa.UniqueConstraint("name", name=op.f("uq_device_groups_name")),
    )
    op.create_table(
        "devices",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("serial", sa.String(length=128), nullable=True),
        sa.Column("hardware_model", sa.String(length=200), nullable=True),
        sa.Column("vendor", sa.String(length=200), nullable=True),
        sa.Column("labels", sa.Text(), nullable=False),
        sa.Column("state", sa.String(length=20), nullable=False),
        sa.Column("firmware_version", sa.String(length=100), nullable=True),
        sa.Column("last_seen_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("addresses", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_devices")),
        sa.UniqueConstraint("serial", name=op.f("uq_devices_serial")),
    )
    with op.batch_alter_table("devices", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_devices_created_at"), ["created_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_devices_name"), ["name"], unique=False)
        batch_op.create_index(batch_op.f("ix_devices_state"), ["state"], unique=False)
        batch_op.create_index(batch_op.f("ix_devices_vendor"), ["vendor"], unique=False)

    op.create_table(
        "claim_serials",
        sa.Column("batch_id", sa.String(length=36), nullable=False),
        sa.Column("serial", sa.String(length=128), nullable=False),
        sa.Column("device_id", sa.String(length=36), nullable=True),
        sa.Column("enrolled_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["batch_id"],
            ["claim_batches.id"],
            name=op.f("fk_claim_serials_batch_id_claim_batches"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["device_id"], ["devices.id"], name=op.f("fk_claim_serials_device_id_devices")
        ),
        sa.PrimaryKeyConstraint("batch_id", "serial", name=op.f("pk_claim_serials")),
        sa.UniqueConstraint("serial", name="uq_claim_serials_serial_only"),
    )
    op.create_table(
        "device_certificates",
        sa.Column("serial_hex", sa.String(length=64), nullable=False),
        sa.Column("device_id", sa.String(length=36), nullable=False),
        sa.Column("issuer_key_id", sa.String(length=64), nullable=False),
        sa.Column("spki_sha256", sa.String(length=64), nullable=False),
        sa.Column("fingerprint_sha256", sa.String(length=64), nullable=False),
        sa.Column("not_before", sa.DateTime(timezone=True), nullable=False),
        sa.Column("not_after", sa.DateTime(timezone=True), nullable=False),
        sa.Column("certificate_pem", sa.Text(), nullable=False),
        sa.Column("enrolled_via", sa.String(length=20), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revocation_reason", sa.String(length=40), nullable=True),
        sa.Column("first_seen_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_seen_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_seen_from", sa.String(length=64), nullable=True),
        sa.ForeignKeyConstraint(
            ["device_id"], ["devices.id"], name=op.f("fk_device_certificates_device_id_devices")
        ),
        sa.PrimaryKeyConstraint("serial_hex", name=op.f("pk_device_certificates")),
        sa.UniqueConstraint(
            "fingerprint_sha256", name=op.f("uq_device_certificates_fingerprint_sha256")
        ),
    )
    with op.batch_alter_table("device_certificates", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_device_certificates_device_id"), ["device_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_device_certificates_not_after"), ["not_after"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_device_certificates_spki_sha256"), ["spki_sha256"], unique=False
        )

    op.create_table(
        "device_group_members",
        sa.Column("group_id", sa.Integer(), nullable=False),
        sa.Column("device_id", sa.String(length=36), nullable=False),
        sa.ForeignKeyConstraint(
            ["device_id"],
            ["devices.id"],
            name=op.f("fk_device_group_members_device_id_devices"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["group_id"],
            ["device_groups.id"],
            name=op.f("fk_device_group_members_group_id_device_groups"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("group_id", "device_id", name=op.f("pk_device_group_members")),
    )
    with op.batch_alter_table("device_group_members", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_device_group_members_device_id"), ["device_id"], unique=False
        )

    op.create_table(
        "device_labels",
        sa.Column("device_id", sa.String(length=36), nullable=False),
        sa.Column("key", sa.String(length=63), nullable=False),
        sa.Column("value", sa.String(length=200), nullable=False),
        sa.ForeignKeyConstraint(
            ["device_id"],
            ["devices.id"],
            name=op.f("fk_device_labels_device_id_devices"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("device_id", "key", name=op.f("pk_device_labels")),
    )
    with op.batch_alter_table("device_labels", schema=None) as batch_op:
        batch_op.create_index("ix_device_labels_key_value", ["key", "value"], unique=False)

    op.create_table(
        "enrollment_tokens",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("device_id", sa.String(length=36), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("used_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["device_id"],
            ["devices.id"],
            name=op.f("fk_enrollment_tokens_device_id_devices"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_enrollment_tokens")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_enrollment_tokens_token_hash")),
    )
    with op.batch_alter_table("enrollment_tokens", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_enrollment_tokens_device_id"), ["device_id"], unique=False
        )

    op.create_table(
        "certificate_uses",
        sa.Column("serial_hex", sa.String(length=64), nullable=False),
        sa.Column("source", sa.String(length=64), nullable=False),
        sa.Column("first_seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("uses", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["serial_hex"],
            ["device_certificates.serial_hex"],
            name=op.f("fk_certificate_uses_serial_hex_device_certificates"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("serial_hex", "source", name=op.f("pk_certificate_uses")),
    )


def downgrade() -> None:

    op.drop_table("certificate_uses")
    with op.batch_alter_table("enrollment_tokens", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_enrollment_tokens_device_id"))

    op.drop_table("enrollment_tokens")
    with op.batch_alter_table("device_labels", schema=None) as batch_op:
        batch_op.drop_index("ix_device_labels_key_value")

    op.drop_table("device_labels")
    with op.batch_alter_table("device_group_members", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_device_group_members_device_id"))

    op.drop_table("device_group_members")
    with op.batch_alter_table("device_certificates", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_device_certificates_spki_sha256"))
        batch_op.drop_index(batch_op.f("ix_device_certificates_not_after"))
        batch_op.drop_index(batch_op.f("ix_device_certificates_device_id"))

    op.drop_table("device_certificates")
    op.drop_table("claim_serials")
    with op.batch_alter_table("devices", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_devices_vendor"))
        batch_op.drop_index(batch_op.f("ix_devices_state"))
        batch_op.drop_index(batch_op.f("ix_devices_name"))
        batch_op.drop_index(batch_op.f("ix_devices_created_at"))

    op.drop_table("devices")
    op.drop_table("device_groups")
    op.drop_table("claim_batches")
