"""device addresses one row each, indexed by address

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-07 23:15:00
"""

from __future__ import annotations

import json

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    table = op.create_table(
        "device_addresses",
        sa.Column("device_id", sa.String(length=36), nullable=False),
        sa.Column("address", sa.String(length=64), nullable=False),
        sa.ForeignKeyConstraint(
            ["device_id"],
            ["devices.id"],
            name=op.f("fk_device_addresses_device_id_devices"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("device_id", "address", name=op.f("pk_device_addresses")),
    )
    op.create_index("ix_device_addresses_address", "device_addresses", ["address"])
    # The devices' JSON lists, one row per address (the lists hold canonical IP text).
    devices = op.get_bind().execute(sa.text("SELECT id, addresses FROM devices")).all()
    rows = [
        {"device_id": device_id, "address": address}
        for device_id, listed in devices
        for address in dict.fromkeys(json.loads(listed or "[]"))
    ]
    if rows:
        op.bulk_insert(table, rows)


def downgrade() -> None:
    op.drop_index("ix_device_addresses_address", table_name="device_addresses")
    op.drop_table("device_addresses")
