"""`bgagents mcp`: the MCP tools on stdio, for an MCP client that starts bgagents as a subprocess."""

from __future__ import annotations

import logging
import sys
from typing import Literal

import httpx

from ..errors import BgAgentsError
from ..runtime import Runtime
from ..settings import Settings
from .backends import HttpBackend, RuntimeBackend
from .tools import build_server

Mode = Literal["auto", "server", "local"]


async def _server_answers(url: str) -> bool:
    try:
        async with httpx.AsyncClient(timeout=2.0) as http:
            return (await http.get(url.rstrip("/") + "/healthz")).status_code == 200
    except httpx.HTTPError:
        return False


async def serve_stdio(settings: Settings, mode: Mode = "auto") -> None:
    """Serves on stdin/stdout until the client closes them.

    `auto` uses the server at BGAGENTS_URL when one answers, else runs a runtime in this process on
    BGAGENTS_HOME (its tasks go on durably when this process is restarted). stdout carries only MCP messages:
    every log line goes to stderr."""
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s")
    if mode != "local" and await _server_answers(settings.url):
        backend = HttpBackend(settings.url, settings.resolve_token(create=False))
        try:
            await build_server(backend).run_stdio_async()
        finally:
            await backend.aclose()
        return
    if mode == "server":
        raise BgAgentsError(f"no bgagents server answers at {settings.url}; start one with 'bgagents serve' "
                            "(or use --mode local)", code="no_server")
    async with Runtime(settings) as runtime:
        await build_server(RuntimeBackend(runtime)).run_stdio_async()
