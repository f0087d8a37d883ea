"""One translation from our errors (and the framework's) to ``{"error": {code, message}}``."""

from __future__ import annotations

import functools
import logging
import re

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.routing import iter_route_contexts
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import compile_path

from fleetguard.core.errors import FleetError, RateLimitedError, ValidationFailedError

log = logging.getLogger("fleetguard.api")


def error_response(
    status: int, code: str, message: str, field: str | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    body: dict[str, object] = {"code": code, "message": message}
    if field is not None:
        body["field"] = field
    return JSONResponse({"error": body}, status_code=status, headers=headers)


def fleet_error_response(exc: FleetError) -> JSONResponse:
    headers = None
    if isinstance(exc, RateLimitedError):
        headers = {"Retry-After": str(max(1, round(exc.retry_after)))}
    if exc.http_status >= 500:
        log.error("request failed: %s (%s)", exc.code, exc.message)
    field = exc.field if isinstance(exc, ValidationFailedError) else None
    return error_response(exc.http_status, exc.code, exc.message, field, headers)


def _field_name(loc: tuple[object, ...]) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header", "cookie")]
    return ".".join(parts) or str(loc[0] if loc else "body")


#: FastAPI's detail when reading a request body failed for any reason but malformed JSON
#: (bytes that are not UTF-8, nesting deeper than the decoder's stack, ...).
BODY_PARSE_FAILED = "There was an error parsing the body"
#: Methods the framework answers for every route: OPTIONS lists the route's methods.
IMPLICIT_METHODS = ("OPTIONS",)


def _is_json_recursion(exc: BaseException) -> bool:
    return isinstance(exc, RecursionError) and "JSON" in str(exc)


def body_parse_error(cause: BaseException | None) -> JSONResponse:
    """422 malformed_json for a body that could not be decoded as JSON, with the reason."""
    if cause is not None and _is_json_recursion(cause):
        message = "request body is nested too deeply"
    elif isinstance(cause, UnicodeDecodeError):
        message = "request body is not valid JSON: not UTF-8"
    else:
        message = "request body is not valid JSON"
    return error_response(422, "malformed_json", message, "body")


@functools.lru_cache(maxsize=1024)
def _path_regex(path: str) -> re.Pattern[str]:
    regex, _, _ = compile_path(path)
    return regex


def allowed_methods(request: Request) -> list[str]:
    """The methods of the resource at this request's path.

    Every route whose template matches counts, not only the first one (all the
    framework's own 405 names); and as OpenAPI resolves paths, a concrete template
    (``/devices/import``) is the resource before a templated one (``/devices/{id}``).
    """
    path = request.scope.get("path", "")
    by_params: dict[int, set[str]] = {}
    for route in iter_route_contexts(request.app.routes):
        route_methods = route.methods
        template = route.path
        if route_methods and template and _path_regex(template).match(path):
            by_params.setdefault(template.count("{"), set()).update(route_methods)
    if not by_params:
        return []
    return sorted(by_params[min(by_params)] | set(IMPLICIT_METHODS))


def method_not_allowed(request: Request) -> Response:
    """405 with an ``Allow`` naming every method of the path; OPTIONS answers 204 with it."""
    allowed = allowed_methods(request)
    allow = ", ".join(allowed)
    if request.method == "OPTIONS" and allowed:
        return Response(status_code=204, headers={"Allow": allow})
    return error_response(
        405, "method_not_allowed",
        f"{request.method} is not allowed here" + (f"; use {allow}" if allow else ""),
        headers={"Allow": allow} if allow else None,
    )


def validation_error_response(exc: RequestValidationError) -> JSONResponse:
    """422 naming the first field at fault (a malformed body is ``malformed_json``)."""
    errors = exc.errors()
    first = errors[0] if errors else {"loc": ("body",), "msg": "invalid request"}
    field = _field_name(tuple(first.get("loc", ())))
    if first.get("type") in ("union_tag_invalid", "union_tag_not_found"):
        # A body that is one of several kinds: the field at fault is the one that
        # says which (e.g. a group's kind), not the body.
        ctx = first.get("ctx")
        tag = str(ctx.get("discriminator", "")).strip("'\"") if isinstance(ctx, dict) else ""
        if tag:
            field = tag if field == "body" else f"{field}.{tag}"
    if first.get("type") == "json_invalid":
        return error_response(422, "malformed_json", "request body is not valid JSON", "body")
    message = f"{field}: {first.get('msg', 'invalid value')}"
    return error_response(422, "validation_failed", message, field)


def http_error_response(request: Request, exc: StarletteHTTPException) -> Response:
    """Starlette's own HTTP errors (routing, body parsing) in our JSON form."""
    if exc.status_code == 405:
        return method_not_allowed(request)
    if exc.status_code == 400 and exc.detail == BODY_PARSE_FAILED:
        return body_parse_error(exc.__cause__)
    codes = {404: "not_found", 413: "payload_too_large"}
    return error_response(
        exc.status_code, codes.get(exc.status_code, "http_error"), str(exc.detail),
        headers=dict(exc.headers) if exc.headers else None,
    )


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(FleetError)
    async def fleet_error(_: Request, exc: FleetError) -> JSONResponse:
        return fleet_error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        return validation_error_response(exc)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        return http_error_response(request, exc)

    @app.exception_handler(RecursionError)
    async def too_deep(_: Request, exc: RecursionError) -> JSONResponse:
        # A body decoded by a route itself (json.loads) nested deeper than the interpreter's
        # stack: bad input, not a server fault. Anything else that recursed too deep is.
        if _is_json_recursion(exc):
            return body_parse_error(exc)
        log.error("unexpected error", exc_info=exc)
        return error_response(500, "internal_error", "internal error; see the server log")

    @app.exception_handler(Exception)
    async def unexpected(_: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error", exc_info=exc)
        return error_response(500, "internal_error", "internal error; see the server log")
