"""telemetry: every counter the agent sends, as rates

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-08 01:40:00

Report rows get a column for each counter that was dropped until now (TCP inbound opens,
resets, retransmits, segments in error; UDP in, out, to no port, in error; interface errors
and drops), and the six counters stored as deltas since the previous report become
per-second rates, as ingestion now stores them (fleetguard.protocol.counters):

* a row's delta is divided by the gap to the previous row of the same device and boot (by
  seq) that holds a delta: the report its delta was measured from. A late report, stored
  without deltas, is skipped over as it was then;
* the first row of a boot held the total since boot (the spike every chart showed): it
  becomes NULL, a new baseline, as a gap of zero or less does;
* hourly rollups of those six metrics (min, max, avg of deltas) are divided by the
  device's learned reporting interval: an estimate (reports were not always that far
  apart), and an hour that held a boot keeps its spike, since the rows behind it are gone;
* the rate reference of every device is cleared: its next report is a new baseline.

Downgrade multiplies back by the gap to the previous row of the boot (a boot's first row
stays NULL: its total since boot is gone) and drops the new columns.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

NEW_COLUMNS = (
    "tcp_inbound", "tcp_resets", "tcp_retransmits", "tcp_in_errors", "udp_in", "udp_out",
    "udp_no_port", "udp_in_errors", "errors_in", "errors_out", "drops_in", "drops_out",
)
DELTA_COLUMNS = (
    "bytes_in", "bytes_out", "packets_in", "packets_out", "tcp_attempts", "tcp_attempt_fails",
)
DELTA_METRIC_IDS = (5, 6, 7, 8, 9, 10)  # telemetry.Metric's ids of those six


def _gaps(*, holding_a_value: bool) -> str:
    """Rows (only those holding a value, or all), each with the gap in ms to the previous
    such row of its device and boot by seq."""
    held = " OR ".join(f"{c} IS NOT NULL" for c in DELTA_COLUMNS) if holding_a_value else "1 = 1"
    return (  # fixed names only
        "WITH gaps AS (SELECT device_key, boot, seq, ts - LAG(ts) OVER "  # noqa: S608
        "(PARTITION BY device_key, boot ORDER BY seq) AS gap_ms "
        f"FROM telemetry_reports WHERE {held}) "
    )


def _rescale_reports(expression: str, *, holding_a_value: bool) -> None:
    """Set each counter column to ``expression`` of (column, gap_ms), NULL without a gap."""
    sets = ", ".join(
        f"{c} = CASE WHEN g.gap_ms > 0 THEN {expression.format(c=f'telemetry_reports.{c}')} END"
        for c in DELTA_COLUMNS
    )
    update = f"UPDATE telemetry_reports SET {sets} FROM gaps AS g "  # noqa: S608
    op.execute(
        _gaps(holding_a_value=holding_a_value) + update +
        "WHERE telemetry_reports.device_key = g.device_key AND telemetry_reports.boot = g.boot "
        "AND telemetry_reports.seq = g.seq"
    )


def _rescale_rollups(factor: str) -> None:
    ids = ", ".join(str(i) for i in DELTA_METRIC_IDS)
    sets = ", ".join(f"{c} = {c} * {factor}" for c in ("min_value", "max_value", "avg_value"))
    op.execute(
        f"UPDATE telemetry_rollups SET {sets} FROM telemetry_devices AS d "  # noqa: S608
        f"WHERE d.key = telemetry_rollups.device_key AND telemetry_rollups.metric IN ({ids}) "
        "AND d.interval_ms > 0"
    )


def upgrade() -> None:
    for name in NEW_COLUMNS:
        op.add_column("telemetry_reports", sa.Column(name, sa.Float(), nullable=True))
    _rescale_reports("{c} * 1000.0 / g.gap_ms", holding_a_value=True)
    _rescale_rollups("1000.0 / d.interval_ms")
    op.execute("UPDATE telemetry_devices SET counters = '{}'")


def downgrade() -> None:
    _rescale_reports("{c} * g.gap_ms / 1000.0", holding_a_value=False)
    _rescale_rollups("d.interval_ms / 1000.0")
    op.execute("UPDATE telemetry_devices SET counters = '{}'")
    with op.batch_alter_table("telemetry_reports") as batch:
        for name in NEW_COLUMNS:
            batch.drop_column(name)
