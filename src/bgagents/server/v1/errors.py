"""Errors in the Managed Agents API's own shape, `{"type": "error", "error": {"type", "message"}}`, with its
types; bad input is never a 500. A 409 says `x-should-retry: false`: the SDK would otherwise send it
again, and a state conflict does not pass by itself."""

from __future__ import annotations

import logging
from collections.abc import Mapping

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from ...errors import BgAgentsError

log = logging.getLogger("bgagents.server")

TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
         404: "not_found_error", 405: "invalid_request_error", 409: "invalid_request_error",
         413: "request_too_large", 422: "invalid_request_error", 429: "rate_limit_error", 500: "api_error",
         503: "overloaded_error"}


def api_error(status: int, message: str, kind: str | None = None,
              headers: Mapping[str, str] | None = None) -> JSONResponse:
    """The API's error response; `kind` defaults to the type of the status."""
    body = {"type": "error", "error": {"type": kind or TYPES.get(status, "api_error"), "message": message},
            "request_id": None}
    extra = {"x-should-retry": "false"} if status == 409 else {}
    return JSONResponse(body, status_code=status, headers={**extra, **(headers or {})})


def install(app: FastAPI) -> None:
    @app.exception_handler(BgAgentsError)
    async def bg_error(_: Request, exc: BgAgentsError) -> JSONResponse:
        return api_error(exc.status, exc.message)

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        first = errors[0] if errors else {"loc": (), "msg": "invalid request"}
        where = ".".join(str(p) for p in first.get("loc", ()) if p not in ("body", "query", "path", "header"))
        return api_error(400, f"{where or 'request'}: {first.get('msg', '')}")

    @app.exception_handler(HTTPException)
    async def http_error(_: Request, exc: HTTPException) -> JSONResponse:
        return api_error(exc.status_code, str(exc.detail), headers=exc.headers)

    @app.exception_handler(Exception)
    async def crash(_: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error")
        return api_error(500, f"internal error: {type(exc).__name__}")
