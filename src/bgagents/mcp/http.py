"""`/mcp` on `serve`: the MCP tools over streamable HTTP, behind the server's bearer token."""

from __future__ import annotations

import secrets
from contextlib import AbstractAsyncContextManager
from typing import TYPE_CHECKING

from starlette.responses import JSONResponse
from starlette.types import Receive, Scope, Send

from ..core.runtime import Runtime
from .backends import RuntimeBackend
from .tools import build_server

if TYPE_CHECKING:
    from ..server.stopping import Stopping


class MCPEndpoint:
    """An ASGI endpoint: checks the token, then hands the request to the MCP session manager."""

    def __init__(self, runtime: Runtime, token: str, host: str = "127.0.0.1", stopping: Stopping | None = None) -> None:
        self.token = token
        self.server = build_server(RuntimeBackend(runtime, stopping))
        # Builds the session manager (with the SDK's DNS-rebinding protection when bound to localhost); the
        # Starlette app it returns is not used: requests reach the manager through this endpoint.
        self.server.streamable_http_app(host=host)

    def run(self) -> AbstractAsyncContextManager[None]:
        """The session manager's lifetime: enter it in the server's lifespan."""
        return self.server.session_manager.run()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = {k.decode().lower(): v.decode() for k, v in scope.get("headers", [])}
        scheme, _, given = headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not secrets.compare_digest(given.strip().encode(), self.token.encode()):
            response = JSONResponse({"error": {"code": "unauthorized", "message": "missing or wrong token: send "
                                               "'Authorization: Bearer TOKEN'"}}, status_code=401)
            await response(scope, receive, send)
            return
        await self.server.session_manager.handle_request(scope, receive, send)
