"""What every request handler may reach: settings, the database, the master key, metrics."""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import Request

from fleetguard.api.metrics import ApiMetrics
from fleetguard.core.config import Settings
from fleetguard.keys import MasterKey
from fleetguard.store import Database


@dataclass
class AppContext:
    settings: Settings
    db: Database
    master_key: MasterKey
    metrics: ApiMetrics
    secure_cookies: bool = True


async def get_context(request: Request) -> AppContext:
    ctx: AppContext = request.app.state.ctx
    return ctx


def client_address(request: Request) -> str:
    return request.client.host if request.client else "unknown"
