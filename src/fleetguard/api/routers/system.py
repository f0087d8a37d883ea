"""Health (public), metrics and the OpenAPI document (authenticated)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request, Response

from fleetguard.api.authz import requires
from fleetguard.api.context import AppContext, get_context
from fleetguard.api.schemas import PROTOCOL_ERRORS, error_responses
from fleetguard.operators import Permission, Principal

router = APIRouter(tags=["system"])
Ctx = Annotated[AppContext, Depends(get_context)]


@router.get("/healthz", responses=error_responses(*PROTOCOL_ERRORS))
def healthz(ctx: Ctx) -> dict[str, str]:
    """Liveness and database reachability; says nothing else about the installation."""
    from sqlalchemy import text

    with ctx.db.session() as session:
        session.execute(text("SELECT 1"))
    return {"status": "ok"}


@router.get(
    "/metrics", response_class=Response, responses={
        200: {"content": {"text/plain": {"schema": {"type": "string"}}},
              "description": "Prometheus text format"},
        **error_responses(*PROTOCOL_ERRORS, 401, 403),
    },
)
def metrics(
    ctx: Ctx, _: Annotated[Principal, Depends(requires(Permission.METRICS_READ))]
) -> Response:
    """Prometheus text format."""
    return Response(ctx.metrics.render(), media_type="text/plain; version=0.0.4")


@router.get("/api/v1/openapi.json", include_in_schema=False)
def openapi_document(
    request: Request, _: Annotated[Principal, Depends(requires(Permission.SELF))]
) -> dict[str, Any]:
    schema: dict[str, Any] = request.app.openapi()
    return schema
