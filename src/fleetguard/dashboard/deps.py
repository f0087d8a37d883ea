"""What every page module shares: the app context, the permission each page declares, and
the not-found and bad-input pages."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, TypeVar

from fastapi import Depends, Request
from fastapi.responses import HTMLResponse

from fleetguard.api.context import AppContext, get_context
from fleetguard.core.errors import ValidationFailedError
from fleetguard.dashboard.render import page
from fleetguard.dashboard.security import page_access
from fleetguard.operators import Permission, Principal

Ctx = Annotated[AppContext, Depends(get_context)]
Self = Annotated[Principal, Depends(page_access(Permission.SELF))]
DeviceReader = Annotated[Principal, Depends(page_access(Permission.DEVICES_READ))]
DeviceWriter = Annotated[Principal, Depends(page_access(Permission.DEVICES_WRITE))]
AuditReader = Annotated[Principal, Depends(page_access(Permission.AUDIT_READ))]
OperatorsReader = Annotated[Principal, Depends(page_access(Permission.OPERATORS_READ))]

E = TypeVar("E", bound=StrEnum)


def not_found(request: Request, principal: Principal, message: str) -> HTMLResponse:
    return page(request, "error.html", {"title": "Not found", "message": message},
                status=404, principal=principal)


def choice(kind: type[E], value: str, field: str) -> E | None:
    """An optional query choice: "" is none, an unknown value is a 422 with the choices."""
    if not value:
        return None
    try:
        return kind(value)
    except ValueError:
        allowed = ", ".join(v.value for v in kind)
        raise ValidationFailedError(f"{field} must be one of {allowed}", field=field) from None
