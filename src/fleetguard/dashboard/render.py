"""Templates, the page response with its security headers, and small display helpers."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from fastapi import Request
from fastapi.responses import HTMLResponse
from jinja2 import Environment, FileSystemLoader, select_autoescape

from fleetguard.core.clock import utcnow
from fleetguard.dashboard.security import PAGE_HEADERS, csrf_token_of
from fleetguard.operators import Permission, Principal

HERE = Path(__file__).parent
STATIC_DIR = HERE / "static"


def _when(value: datetime | None) -> str:
    if value is None:
        return "—"
    return value.strftime("%Y-%m-%d %H:%M UTC")


def _clock(value: datetime) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S")


def _ago(value: datetime | None) -> str:
    if value is None:
        return "never"
    seconds = int((utcnow() - value).total_seconds())
    future = seconds < 0
    seconds = abs(seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            text = f"{seconds // size} {unit}"
            break
    else:
        text = f"{seconds} s"
    return f"in {text}" if future else f"{text} ago"


def _colons(hexstr: str) -> str:
    return ":".join(hexstr[i:i + 2] for i in range(0, len(hexstr), 2)).upper()


env = Environment(
    loader=FileSystemLoader(HERE / "templates"),
    autoescape=select_autoescape(["html"]),
    trim_blocks=True,
    lstrip_blocks=True,
)
env.filters["when"] = _when
env.filters["ago"] = _ago
env.filters["clock"] = _clock
env.filters["colons"] = _colons


def nav_for(principal: Principal | None) -> list[tuple[str, str]]:
    if principal is None:
        return []
    items = [("/", "Overview")]
    if principal.can(Permission.DEVICES_READ):
        items += [("/devices", "Devices"), ("/findings", "Findings"), ("/scans", "Scans"),
                  ("/certificates", "Certificates & CA")]
    if principal.can(Permission.AUDIT_READ):
        items.append(("/audit", "Audit log"))
    if principal.can(Permission.OPERATORS_READ):
        items.append(("/operators", "Operators"))
    return items


def page_links(
    path: str, params: dict[str, str], *, cursor: str, next_cursor: str | None
) -> dict[str, str | None]:
    """A keyset-paged list's links, for the ``pager`` macro: its first page (unless this
    is it) and the next (if there is one), both keeping the list's filters."""
    return {
        "first_url": f"{path}?{urlencode(params)}" if cursor else None,
        "next_url": f"{path}?{urlencode({**params, 'cursor': next_cursor})}"
        if next_cursor else None,
    }


def page(
    request: Request, template: str, context: dict[str, Any], *, status: int = 200,
    principal: Principal | None = None, headers: dict[str, str] | None = None,
) -> HTMLResponse:
    full = {
        "request": request,
        "principal": principal,
        "nav": nav_for(principal),
        "path": request.url.path,
        "csrf": csrf_token_of(request) if principal else "",
        "can_write": bool(principal and principal.can(Permission.DEVICES_WRITE)),
        **context,
    }
    html = env.get_template(template).render(full)
    return HTMLResponse(html, status_code=status, headers={**PAGE_HEADERS, **(headers or {})})
