"""Bearer-token authentication: every route but /healthz needs `Authorization: Bearer TOKEN`."""

from __future__ import annotations

import secrets

from fastapi import Request

from ..errors import BgAgentsError


class Unauthorized(BgAgentsError):
    code = "unauthorized"
    status = 401


def require_token(request: Request) -> None:
    expected: str = request.app.state.token
    header = request.headers.get("authorization", "")
    scheme, _, given = header.partition(" ")
    if scheme.lower() != "bearer" or not secrets.compare_digest(given.strip().encode(), expected.encode()):
        raise Unauthorized("missing or wrong token: send 'Authorization: Bearer TOKEN' "
                           "(the token is BGAGENTS_TOKEN or $BGAGENTS_HOME/token)")
