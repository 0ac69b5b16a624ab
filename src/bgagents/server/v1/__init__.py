"""The Managed Agents API (`/v1/...`), as the official `anthropic` SDK speaks it, on a runtime's
`Managed` extension: an app of its own, mounted beside `/api/v1` on the server's app, so the server's
middleware (token, limits, headers) covers it, and its errors take the API's shape."""

from __future__ import annotations

from fastapi import FastAPI

from ...runtime import Runtime
from ..stopping import Stopping
from . import agents, environments, errors, events, sessions, threads, unsupported


def create_v1_app(runtime: Runtime, stopping: Stopping) -> FastAPI:
    """`stopping`: the server's, so a stream ends when the server begins to stop."""
    app = FastAPI(title="bgagents Managed Agents API", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.runtime = runtime
    app.state.stopping = stopping
    errors.install(app)
    for module in (agents, environments, events, threads, sessions, unsupported):  # unsupported: last
        app.include_router(module.router)
    return app
