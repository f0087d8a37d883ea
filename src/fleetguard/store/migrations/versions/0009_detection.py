"""detection: alarms, rule sets, detector state

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-08 01:40:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def _stamp(name: str, *, nullable: bool = False) -> sa.Column[object]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def _on_device(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(["device_id"], ["devices.id"],
                                   name=op.f(f"fk_{table}_device_id_devices"), ondelete="CASCADE")


def _rulesets() -> None:
    op.create_table(
        "detection_ruleset_heads",
        sa.Column("scope", sa.String(length=120), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("scope", name=op.f("pk_detection_ruleset_heads")),
    )
    op.create_table(
        "detection_rulesets",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("scope", sa.String(length=120), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("document", sa.Text(), nullable=False),
        sa.Column("activated_by", sa.String(length=200), nullable=False),
        _stamp("activated_at"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_detection_rulesets")),
        sa.UniqueConstraint("scope", "version", name="uq_detection_rulesets_version"),
    )


def _alarms() -> None:
    op.create_table(
        "alarms",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("device_id", sa.String(length=36), nullable=False),
        sa.Column("cause", sa.String(length=200), nullable=False),
        sa.Column("rule_id", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("family", sa.String(length=32), nullable=False),
        sa.Column("severity", sa.String(length=10), nullable=False),
        sa.Column("severity_rank", sa.SmallInteger(), nullable=False),
        sa.Column("confidence", sa.String(length=8), nullable=False),
        sa.Column("confidence_rank", sa.SmallInteger(), nullable=False),
        sa.Column("state", sa.String(length=12), nullable=False),
        sa.Column("summary", sa.Text(), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("features", sa.Text(), nullable=False),
        sa.Column("observed", sa.Float(), nullable=True),
        sa.Column("comparison", sa.String(length=2), nullable=True),
        sa.Column("threshold", sa.Float(), nullable=True),
        sa.Column("expected", sa.Text(), nullable=False),
        sa.Column("expected_low", sa.Float(), nullable=True),
        sa.Column("expected_high", sa.Float(), nullable=True),
        sa.Column("subjects", sa.Text(), nullable=False),
        sa.Column("since_ms", sa.BigInteger(), nullable=False),
        sa.Column("first_seq", sa.BigInteger(), nullable=False),
        sa.Column("last_seq", sa.BigInteger(), nullable=False),
        sa.Column("first_collected_ms", sa.BigInteger(), nullable=False),
        sa.Column("last_collected_ms", sa.BigInteger(), nullable=False),
        sa.Column("reports", sa.Integer(), nullable=False),
        sa.Column("quiet_reports", sa.Integer(), nullable=False),
        sa.Column("suppressed", sa.Integer(), nullable=False),
        _stamp("opened_at"),
        _stamp("last_seen_at"),
        _stamp("acknowledged_at", nullable=True),
        sa.Column("acknowledged_by", sa.String(length=200), nullable=True),
        _stamp("resolved_at", nullable=True),
        sa.Column("resolved_by", sa.String(length=200), nullable=True),
        sa.Column("verdict", sa.String(length=16), nullable=True),
        sa.Column("verdict_note", sa.Text(), nullable=True),
        sa.Column("verdict_by", sa.String(length=200), nullable=True),
        _stamp("verdict_at", nullable=True),
        _on_device("alarms"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_alarms")),
    )
    op.create_index("ix_alarms_device_state", "alarms", ["device_id", "state", "cause"])
    op.create_index(op.f("ix_alarms_rule_id"), "alarms", ["rule_id"])
    op.create_index("ix_alarms_state_rank", "alarms", ["state", "severity_rank", "id"])
    op.create_index("ix_alarms_state_seen", "alarms", ["state", "last_seen_at", "id"])


def _feedback_and_state() -> None:
    op.create_table(
        "detection_device_state",
        sa.Column("device_id", sa.String(length=36), nullable=False),
        sa.Column("state", sa.LargeBinary(), nullable=False),
        _stamp("saved_at"),
        _on_device("detection_device_state"),
        sa.PrimaryKeyConstraint("device_id", name=op.f("pk_detection_device_state")),
    )
    op.create_table(
        "detection_feedback",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("device_id", sa.String(length=36), nullable=False),
        sa.Column("rule_id", sa.String(length=64), nullable=False),
        sa.Column("subject", sa.String(length=300), nullable=True),
        _stamp("until", nullable=True),
        sa.Column("alarm_id", sa.Integer(), nullable=True),
        sa.Column("note", sa.Text(), nullable=False),
        sa.Column("created_by", sa.String(length=200), nullable=False),
        _stamp("created_at"),
        _stamp("lifted_at", nullable=True),
        sa.Column("lifted_by", sa.String(length=200), nullable=True),
        _on_device("detection_feedback"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_detection_feedback")),
    )
    op.create_index(op.f("ix_detection_feedback_device_id"), "detection_feedback",
                    ["device_id"])


def upgrade() -> None:
    _rulesets()
    _alarms()
    _feedback_and_state()


def downgrade() -> None:
    op.drop_index(op.f("ix_detection_feedback_device_id"), table_name="detection_feedback")
    op.drop_table("detection_feedback")
    op.drop_table("detection_device_state")
    for index in ("ix_alarms_state_seen", "ix_alarms_state_rank", "ix_alarms_rule_id",
                  "ix_alarms_device_state"):
        op.drop_index(index, table_name="alarms")
    op.drop_table("alarms")
    op.drop_table("detection_rulesets")
    op.drop_table("detection_ruleset_heads")
