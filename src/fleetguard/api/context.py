"""What every request handler may reach: settings, the database, the master key, metrics,
and the work the running process does for them (scan jobs, decommissioning)."""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import Request

from fleetguard.api.metrics import ApiMetrics
from fleetguard.api.orchestration import DeviceDecommission, ScanLauncher
from fleetguard.core.config import Settings
from fleetguard.detect.service import DetectionService
from fleetguard.identity.errors import CaNotInitializedError
from fleetguard.keys import MasterKey
from fleetguard.pki import FleetCA
from fleetguard.store import Database


@dataclass
class AppContext:
    settings: Settings
    db: Database
    master_key: MasterKey
    metrics: ApiMetrics
    scans: ScanLauncher
    decommission: DeviceDecommission
    ca: FleetCA | None = None
    secure_cookies: bool = True
    detection: DetectionService | None = None  # set by the server that runs detection

    def fleet_ca(self) -> FleetCA:
        if self.ca is None:
            raise CaNotInitializedError("this server runs without a fleet CA")
        return self.ca


async def get_context(request: Request) -> AppContext:
    ctx: AppContext = request.app.state.ctx
    return ctx


def client_address(request: Request) -> str:
    return request.client.host if request.client else "unknown"
