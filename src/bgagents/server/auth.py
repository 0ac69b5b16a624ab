"""Authentication: every route under /api/ (and the dashboard's /dashboard/api/) needs
`Authorization: Bearer TOKEN`, or the dashboard's session cookie. The Managed Agents API under /v1/
takes the same token as its SDK sends it, `x-api-key: TOKEN`, or as the bearer (never the cookie).

The check is ASGI middleware, so it runs before routing and before anything reads the body: a request
without the token is a 401 whatever it carries (a route's own checks, like a malformed body, come after).

The session cookie holds a value derived from the token (never the token itself); it is HttpOnly and
SameSite=Strict. A request that changes state on the strength of the cookie alone must also carry the
page's CSRF token in `X-CSRF-Token`, and its `Origin`, when sent, must be the server's own: a page on
another site can neither read that token nor send the header without a preflight we never answer.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

from starlette.requests import HTTPConnection
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from ..errors import BgAgentsError
from .errors import error_response
from .v1.errors import api_error

PROTECTED = ("/api/", "/dashboard/api/", "/v1/")
MANAGED_API = "/v1/"
API_KEY_HINT = ("missing or wrong API key: send the bgagents token as 'x-api-key' (or 'Authorization: Bearer'); "
                "it is BGAGENTS_TOKEN or $BGAGENTS_HOME/token")
HINT = ("missing or wrong token: send 'Authorization: Bearer TOKEN' "
        "(the token is BGAGENTS_TOKEN or $BGAGENTS_HOME/token)")
CSRF_HINT = "a change made with the dashboard's cookie needs its X-CSRF-Token header and the server's own Origin"
SESSION_COOKIE = "bgagents_session"
CSRF_HEADER = "x-csrf-token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


class Unauthorized(BgAgentsError):
    code = "unauthorized"
    status = 401


class Forbidden(BgAgentsError):
    code = "forbidden"
    status = 403


def token_ok(authorization: str, expected: str) -> bool:
    scheme, _, given = authorization.partition(" ")
    return scheme.lower() == "bearer" and token_matches(given, expected)


def token_matches(given: str, expected: str) -> bool:
    return secrets.compare_digest(given.strip().encode(), expected.encode())


def _derive(token: str, purpose: str) -> str:
    return hmac.new(token.encode(), f"bgagents-{purpose}".encode(), hashlib.sha256).hexdigest()


def session_value(token: str) -> str:
    """What the session cookie holds: changing the token logs every browser out."""
    return _derive(token, "session")


def csrf_token(token: str) -> str:
    """The value the dashboard page sends back in `X-CSRF-Token`."""
    return _derive(token, "csrf")


def has_session(conn: HTTPConnection, token: str) -> bool:
    cookie = conn.cookies.get(SESSION_COOKIE, "")
    return bool(cookie) and secrets.compare_digest(cookie.encode(), session_value(token).encode())


def same_origin(conn: HTTPConnection) -> bool:
    """True when the request names no `Origin`, or names this server (scheme, host and port)."""
    origin = conn.headers.get("origin")
    return origin is None or origin == f"{conn.url.scheme}://{conn.url.netloc}"


def refusal(conn: HTTPConnection, token: str) -> Response | None:
    """Why a request to a protected route is refused, as its response; None when it may go on."""
    header = conn.headers.get("authorization", "")
    if token_ok(header, token):
        return None
    if conn.scope["path"].startswith(MANAGED_API):
        if token_matches(conn.headers.get("x-api-key", ""), token):
            return None
        return api_error(401, API_KEY_HINT)
    if header or not has_session(conn, token):
        return error_response(401, Unauthorized.code, HINT, headers={"WWW-Authenticate": "Bearer"})
    if conn.scope["method"] not in SAFE_METHODS and not (
            same_origin(conn) and secrets.compare_digest(conn.headers.get(CSRF_HEADER, "").encode(),
                                                         csrf_token(token).encode())):
        return error_response(403, Forbidden.code, CSRF_HINT)
    return None


class RequireToken:
    def __init__(self, app: ASGIApp, token: str) -> None:
        self.app = app
        self.token = token

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"].startswith(PROTECTED):
            response = refusal(HTTPConnection(scope), self.token)
            if response is not None:
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)
