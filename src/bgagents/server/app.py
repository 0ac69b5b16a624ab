"""The FastAPI application: /api/v1 routes over one `Runtime`, token auth, JSON errors."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from starlette.routing import Route

from .. import __version__
from ..mcp.http import MCPEndpoint
from ..runtime import Runtime
from ..webhooks import Webhooks
from . import approvals, conversations, dashboard, events, files, schedules, tasks, usage, webhooks
from .auth import RequireToken
from .docs import install_docs
from .errors import install_error_handlers
from .guards import RefuseNul
from .headers import SecurityHeaders
from .openapi import install_openapi
from .stopping import Stopping
from .v1 import create_v1_app


def create_app(runtime: Runtime, token: str, *, manage_runtime: bool = True, host: str = "127.0.0.1") -> FastAPI:
    """An app serving `runtime`; with `manage_runtime`, the app starts and stops it with its lifespan.

    `host` is where the server listens: on localhost, `/mcp` refuses requests from pages of other hosts."""
    stopping = Stopping()  # set by `serve` as its shutdown begins: streams and long waits end
    mcp_endpoint = MCPEndpoint(runtime, token, host, stopping)
    hooks = Webhooks(runtime, runtime.settings.webhooks)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        if manage_runtime:
            await runtime.start()
            await hooks.start()
        try:
            async with mcp_endpoint.run():
                yield
        finally:
            if manage_runtime:
                await hooks.stop()
                await runtime.stop()

    app = FastAPI(title="bgagents", version=__version__, lifespan=lifespan, docs_url=None, redoc_url=None,
                  description="Durable background LLM agents: launch, watch, steer, cancel, resume, fork.")
    app.state.runtime = runtime
    app.state.token = token
    app.state.webhooks = hooks
    app.state.stopping = stopping
    app.add_middleware(RefuseNul)
    app.add_middleware(RequireToken, token=token)  # runs before the routes and RefuseNul
    app.add_middleware(SecurityHeaders)  # added last, so it runs first: its headers go on every response
    install_error_handlers(app)
    install_openapi(app)
    install_docs(app)

    @app.get("/healthz", tags=["meta"])
    async def healthz() -> dict[str, str]:
        return {"status": "ok", "version": __version__}

    api = APIRouter(prefix="/api/v1")
    api.include_router(tasks.router)
    api.include_router(events.router)
    api.include_router(approvals.router)
    api.include_router(conversations.router)
    api.include_router(files.router)
    api.include_router(usage.router)
    api.include_router(webhooks.router)
    api.include_router(schedules.router)

    @api.get("/agents", tags=["meta"])
    async def agents(request: Request) -> list[dict[str, Any]]:
        rt: Runtime = request.app.state.runtime
        usable = [{**p.model_dump(include={"name", "description", "model", "tools", "source"}), "error": None}
                  for p in rt.profiles().values()]
        return usable + [{"name": name, "error": error} for name, error in sorted(rt.broken_profiles().items())]

    @api.get("/stats", tags=["meta"])
    async def stats(request: Request) -> dict[str, Any]:
        rt: Runtime = request.app.state.runtime
        return {"running": await rt.running_counts()}

    app.include_router(api)
    app.mount("/v1", create_v1_app(runtime, stopping))  # the Managed Agents API, as the anthropic SDK speaks it
    # MCP over streamable HTTP (an ASGI endpoint of the SDK's, so not in the OpenAPI document).
    app.router.routes.append(Route("/mcp", endpoint=mcp_endpoint, methods=["GET", "POST", "DELETE"]))
    dashboard.install(app)
    return app
