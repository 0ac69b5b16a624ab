"""Security headers on every response: no framing, no type sniffing, no referrer to other sites, and a
Content-Security-Policy. Pages set their own policy (`page_policy`); anything else gets `DEFAULT_POLICY`,
which lets nothing load or run.

Workspace files (`/api/v1/files/…`) are written by agents, so they are served with `FILE_POLICY`: a
sandboxed, script-less document of an opaque origin, never the dashboard's (see `server.files`).
"""

from __future__ import annotations

import base64
import hashlib
import re

from starlette.types import ASGIApp, Message, Receive, Scope, Send

CSP = "content-security-policy"
DEFAULT_POLICY = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
FILE_POLICY = "sandbox; default-src 'none'; img-src 'self' data:; style-src 'unsafe-inline'; frame-ancestors 'none'"
ALWAYS = {"x-content-type-options": "nosniff", "x-frame-options": "DENY", "referrer-policy": "same-origin"}
_INLINE_SCRIPT = re.compile(r"<script(?![^>]*\bsrc=)[^>]*>(.*?)</script>", re.S)


def inline_scripts(html: str) -> list[str]:
    """The bodies of the page's inline `<script>` elements (an import map, Swagger UI's start-up)."""
    return _INLINE_SCRIPT.findall(html)


def page_policy(html: str, *, styles: str = "'self'") -> str:
    """The policy of one of our own pages: its files from this server, its inline scripts by hash only,
    requests to this server only, never framed. `styles` widens style-src where a page needs it."""
    hashes = " ".join(f"'sha256-{base64.b64encode(hashlib.sha256(s.encode()).digest()).decode()}'"
                      for s in inline_scripts(html))
    return (f"default-src 'self'; script-src 'self' {hashes}".rstrip() + f"; style-src {styles}; "
            "img-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
            "frame-ancestors 'none'")


class SecurityHeaders:
    """Adds `ALWAYS` to every HTTP response, and `DEFAULT_POLICY` where the response set no policy of its own."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                present = {name.decode("latin-1").lower() for name, _ in headers}
                for name, value in (*ALWAYS.items(), (CSP, DEFAULT_POLICY)):
                    if name not in present:
                        headers.append((name.encode("latin-1"), value.encode("latin-1")))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)
