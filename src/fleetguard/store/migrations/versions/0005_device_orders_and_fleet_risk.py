"""device list orders and the fleet risk history

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-25 12:05:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "fleet_risk_snapshots",
        sa.Column("hour", sa.DateTime(timezone=True), nullable=False),
        sa.Column("computed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("score", sa.Float(), nullable=False),
        sa.Column("devices", sa.Integer(), nullable=False),
        sa.Column("devices_at_risk", sa.Integer(), nullable=False),
        sa.Column("open_findings", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("hour", name=op.f("pk_fleet_risk_snapshots")),
    )
    op.create_index("ix_devices_name_id", "devices", ["name", "id"])
    op.create_index("ix_devices_state_name_id", "devices", ["state", "name", "id"])
    op.create_index("ix_devices_created_at_id", "devices", ["created_at", "id"])
    op.create_index("ix_findings_state_check_device", "findings",
                    ["state", "check", "device_id"])
    op.create_index("ix_findings_state_device_rank", "findings",
                    ["state", "device_id", "severity_rank"])


def downgrade() -> None:
    op.drop_index("ix_findings_state_device_rank", table_name="findings")
    op.drop_index("ix_findings_state_check_device", table_name="findings")
    op.drop_index("ix_devices_created_at_id", table_name="devices")
    op.drop_index("ix_devices_state_name_id", table_name="devices")
    op.drop_index("ix_devices_name_id", table_name="devices")
    op.drop_table("fleet_risk_snapshots")
