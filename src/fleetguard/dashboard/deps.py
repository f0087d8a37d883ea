"""What every page module shares: the app context, the permission each page declares, and
the not-found and bad-input pages."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.responses import HTMLResponse

from fleetguard.api.context import AppContext, get_context
from fleetguard.dashboard.render import page
from fleetguard.dashboard.security import page_access
from fleetguard.operators import Permission, Principal

Ctx = Annotated[AppContext, Depends(get_context)]
Self = Annotated[Principal, Depends(page_access(Permission.SELF))]
DeviceReader = Annotated[Principal, Depends(page_access(Permission.DEVICES_READ))]
DeviceWriter = Annotated[Principal, Depends(page_access(Permission.DEVICES_WRITE))]
AuditReader = Annotated[Principal, Depends(page_access(Permission.AUDIT_READ))]
OperatorsReader = Annotated[Principal, Depends(page_access(Permission.OPERATORS_READ))]


def not_found(request: Request, principal: Principal, message: str) -> HTMLResponse:
    return page(request, "error.html", {"title": "Not found", "message": message},
                status=404, principal=principal)


