"""Every table of the platform; importing this module registers them all on Base.metadata."""

from fleetguard.store.tables import detect as _detect  # noqa: F401 - registers its tables
from fleetguard.store.tables import notify as _notify  # noqa: F401 - registers its tables
from fleetguard.store.tables import orders as _orders  # noqa: F401 - registers the indexes
from fleetguard.store.tables.audit import AuditEntryRow, AuditHeadRow
from fleetguard.store.tables.findings import (
    FindingRow,
    RiskSnapshotRow,
    ScanHostRow,
    ScanRow,
    ScanScheduleRow,
)
from fleetguard.store.tables.identity import (
    CertificateUseRow,
    ClaimBatchRow,
    ClaimSerialRow,
    DeviceCertificateRow,
    EnrollmentTokenRow,
)
from fleetguard.store.tables.operators import (
    ApiTokenRow,
    LoginChallengeRow,
    LoginThrottleRow,
    OperatorRow,
    RecoveryCodeRow,
    WebSessionRow,
)
from fleetguard.store.tables.registry import (
    DeviceAddressRow,
    DeviceGroupMemberRow,
    DeviceGroupRow,
    DeviceLabelRow,
    DeviceRow,
)
from fleetguard.store.tables.secrets import SecretRow
from fleetguard.store.tables.telemetry import (
    DeviceCommandRow,
    TelemetryDeviceRow,
    TelemetryRejectionRow,
    TelemetryReportRow,
    TelemetryRollupRow,
)

__all__ = [
    "ApiTokenRow",
    "AuditEntryRow",
    "AuditHeadRow",
    "CertificateUseRow",
    "ClaimBatchRow",
    "ClaimSerialRow",
    "DeviceAddressRow",
    "DeviceCertificateRow",
    "DeviceCommandRow",
    "DeviceGroupMemberRow",
    "DeviceGroupRow",
    "DeviceLabelRow",
    "DeviceRow",
    "EnrollmentTokenRow",
    "FindingRow",
    "LoginChallengeRow",
    "LoginThrottleRow",
    "OperatorRow",
    "RecoveryCodeRow",
    "RiskSnapshotRow",
    "ScanHostRow",
    "ScanRow",
    "ScanScheduleRow",
    "SecretRow",
    "TelemetryDeviceRow",
    "TelemetryRejectionRow",
    "TelemetryReportRow",
    "TelemetryRollupRow",
    "WebSessionRow",
]
