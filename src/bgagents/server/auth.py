"""Bearer-token authentication: every route under /api/ needs `Authorization: Bearer TOKEN`.

The check is ASGI middleware, so it runs before routing and before anything reads the body: a request
without the token is a 401 whatever it carries (a route's own checks, like a malformed body, come after).
"""

from __future__ import annotations

import secrets

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

from ..errors import BgAgentsError
from .errors import error_response

PROTECTED = "/api/"
HINT = ("missing or wrong token: send 'Authorization: Bearer TOKEN' "
        "(the token is BGAGENTS_TOKEN or $BGAGENTS_HOME/token)")


class Unauthorized(BgAgentsError):
    code = "unauthorized"
    status = 401


def token_ok(authorization: str, expected: str) -> bool:
    scheme, _, given = authorization.partition(" ")
    return scheme.lower() == "bearer" and secrets.compare_digest(given.strip().encode(), expected.encode())


class RequireToken:
    def __init__(self, app: ASGIApp, token: str) -> None:
        self.app = app
        self.token = token

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"].startswith(PROTECTED):
            if not token_ok(Headers(scope=scope).get("authorization", ""), self.token):
                response = error_response(401, Unauthorized.code, HINT, headers={"WWW-Authenticate": "Bearer"})
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)
