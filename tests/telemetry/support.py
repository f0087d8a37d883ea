"""Devices and reports for the telemetry tests."""

from __future__ import annotations

from datetime import datetime

from fleetguard.core.clock import utcnow
from fleetguard.protocol import TelemetryReport, encode_message, to_millis
from fleetguard.registry import service as registry
from fleetguard.store import Database
from tests.protocol import samples

BOOT = samples.BOOT_ID
OTHER_BOOT = "9a9e5a8c-2b1d-4e6f-9a7b-0c1d2e3f4a5b"
INTERVAL_MS = 60_000


def add_device(db: Database, name: str = "cam") -> str:
    with db.session() as session:
        return registry.register_device(session, name=name, actor="test").id


def report(seq: int, at: datetime | None = None, *, boot: str = BOOT, interval_ms: int = INTERVAL_MS,
           **overrides: object) -> TelemetryReport:
    collected = to_millis(at or utcnow())
    fields: dict[str, object] = {
        "seq": seq, "collected_at_ms": collected, "period_start_ms": collected - interval_ms,
        "boot_id": boot,
    }
    fields.update(overrides)
    return samples.telemetry(**fields)


def body(message: TelemetryReport, content_type: str = "application/cbor") -> bytes:
    return encode_message(message, content_type)
