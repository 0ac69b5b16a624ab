"""A check made on every request before routing: no NUL character in its path or query.

PostgreSQL's text cannot hold one, so an id or filter carrying one would fail in the database (a 500);
it is refused here as bad input instead, once for every route.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send

from .errors import error_response


class RefuseNul:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and ("\x00" in scope["path"] or b"%00" in scope["query_string"]):
            response = error_response(400, "invalid_request", "the path or query contains a NUL character")
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)
