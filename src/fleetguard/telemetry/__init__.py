"""Device telemetry: ingestion, time series with retention, online state, device commands.

Messages arrive with the device's identity already established by the transport (the
verified client certificate on HTTPS, the topic on the broker, whose permissions keep a
device to its own topics); nothing in a message body names the device.

    ingest    IngestService: every message a device sends (telemetry, heartbeats, command
              results), and the registry's last-seen (note_device_seen), one writer
    upkeep    offline sweep, rollups and expiry (run by the writer when due)
    queries   reads: raw series, rollups, status, snapshot, refusal counts
    series    for the API: a device's metrics, and a metric stepped and aggregated; for
              charts, every metric's maximum per step
    commands  queueing commands and handing them to devices

>>> service = IngestService(db)                                    # doctest: +SKIP
>>> service.submit_telemetry(device_id, body, "application/cbor")  # doctest: +SKIP
>>> service.flush(); service.stop()                                # doctest: +SKIP
"""

from fleetguard.telemetry._batch import UNKNOWN_DEVICE, Committed, ReportHook
from fleetguard.telemetry._plan import HeartbeatFacts, ReportFacts
from fleetguard.telemetry.commands import (
    list_commands,
    pending_commands,
    queue_command,
    record_command_result,
)
from fleetguard.telemetry.errors import (
    CommandFinishedError,
    CommandNotFoundError,
    IngestOverloadedError,
    IngestStoppedError,
    MetricNotFoundError,
)
from fleetguard.telemetry.ingest import IngestService
from fleetguard.telemetry.models import (
    METRIC_IDS,
    METRIC_INFO,
    Aggregation,
    CommandState,
    CompactionResult,
    DeviceTelemetryStatus,
    IngestStats,
    Metric,
    MetricInfo,
    MetricKind,
    MetricSummary,
    MetricUnit,
    OfflinePolicy,
    QueuedCommand,
    RetentionPolicy,
    RollupPoint,
    Sample,
    SeriesQuery,
    Snapshot,
    SweepResult,
)
from fleetguard.telemetry.queries import (
    count_reporting_devices,
    device_status,
    latest_snapshot,
    read_rollups,
    read_series,
    rejection_counts,
    reporting_device_ids,
)
from fleetguard.telemetry.series import (
    MAX_SERIES_POINTS,
    aggregate_series,
    check_series_query,
    default_series_start,
    metric_named,
    metric_summaries,
    step_maxima,
)
from fleetguard.telemetry.upkeep import SYSTEM_ACTOR, compact_telemetry, sweep_offline

__all__ = [
    "MAX_SERIES_POINTS",
    "METRIC_IDS",
    "METRIC_INFO",
    "SYSTEM_ACTOR",
    "UNKNOWN_DEVICE",
    "Aggregation",
    "CommandFinishedError",
    "CommandNotFoundError",
    "CommandState",
    "Committed",
    "CompactionResult",
    "DeviceTelemetryStatus",
    "HeartbeatFacts",
    "IngestOverloadedError",
    "IngestService",
    "IngestStats",
    "IngestStoppedError",
    "Metric",
    "MetricInfo",
    "MetricKind",
    "MetricNotFoundError",
    "MetricSummary",
    "MetricUnit",
    "OfflinePolicy",
    "QueuedCommand",
    "ReportFacts",
    "ReportHook",
    "RetentionPolicy",
    "RollupPoint",
    "Sample",
    "SeriesQuery",
    "Snapshot",
    "SweepResult",
    "aggregate_series",
    "check_series_query",
    "compact_telemetry",
    "count_reporting_devices",
    "default_series_start",
    "device_status",
    "latest_snapshot",
    "list_commands",
    "metric_named",
    "metric_summaries",
    "pending_commands",
    "queue_command",
    "read_rollups",
    "read_series",
    "record_command_result",
    "rejection_counts",
    "reporting_device_ids",
    "step_maxima",
    "sweep_offline",
]
