"""The OpenAPI document says what the API really does: the bearer token on every route but /healthz, and
each error status a route can answer, with the one JSON shape every error has."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel, Field

SCHEME = "bearer"


class ErrorDetail(BaseModel):
    code: str = Field(description="Stable, for programs: e.g. not_found, invalid_request, unknown_model")
    message: str = Field(description="For people: what was wrong and what to do")
    details: list[dict[str, Any]] | None = Field(None, description="On 422: each field that failed validation")


class ErrorBody(BaseModel):
    """Every error the API answers."""

    error: ErrorDetail


STATUS_TEXT = {
    400: "Bad input: an unknown model, agent or status, a bad path, a malformed body",
    401: "Missing or wrong token",
    404: "No such task, conversation session, approval or file",
    409: "The task's (or session's) state forbids it",
    422: "The request does not match this document",
    503: "The server is stopping: a wait was cut short; ask again once it is back",
}


def errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """A route's `responses=` for the error statuses particular to it. Every route under /api/ also gets
    401, and 400 and 422 when it takes parameters or a body (added to the document here)."""
    return {status: {"model": ErrorBody, "description": STATUS_TEXT[status]} for status in statuses}


def _error_response(status: int) -> dict[str, Any]:
    return {"description": STATUS_TEXT[status],
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}}}


def document(app: FastAPI) -> dict[str, Any]:
    doc = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
    components = doc.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    body_schema = ErrorBody.model_json_schema(ref_template="#/components/schemas/{model}")
    schemas.update(body_schema.pop("$defs", {}))
    schemas["ErrorBody"] = body_schema
    components["securitySchemes"] = {SCHEME: {
        "type": "http", "scheme": "bearer",
        "description": "BGAGENTS_TOKEN, or the file $BGAGENTS_HOME/token made on the server's first start"}}
    doc["security"] = [{SCHEME: []}]
    for path, operations in doc["paths"].items():
        for operation in operations.values():
            if not path.startswith("/api/"):
                operation["security"] = []  # /healthz
                continue
            responses = operation["responses"]
            statuses = {401, *(int(s) for s in responses if s.startswith("4"))}
            if operation.get("parameters") or operation.get("requestBody"):
                statuses |= {400, 422}
            for status in sorted(statuses):  # also replaces FastAPI's own 422, and an SSE route's media type
                responses[str(status)] = _error_response(status)
    for unused in ("HTTPValidationError", "ValidationError"):
        schemas.pop(unused, None)
    return doc


def install_openapi(app: FastAPI) -> None:
    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = document(app)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
