from __future__ import annotations

from collections.abc import Iterator

import pytest

from fleetguard.store import Database
from fleetguard.telemetry import IngestService
from tests.api.conftest import device_app, fleet_ca

__all__ = ["device_app", "fleet_ca"]


@pytest.fixture
def ingest(db: Database) -> Iterator[IngestService]:
    service = IngestService(db, sweep_every_s=None, compact_every_s=None, linger_s=0.01)
    service.start()
    yield service
    service.stop()
