"""A local webhook receiver that verifies Standard Webhooks signatures, for the webhook tests."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from standardwebhooks.webhooks import Webhook
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from .conftest import free_port


@dataclass
class Receiver:
    """POST /hook: verifies the signature with `secret` (once known); answers `fail_first` tries with 500,
    holds requests for `hang` seconds. `accepted` keeps each verified body it answered 2xx to."""

    secret: str | None = None
    fail_first: int = 0
    hang: float = 0.0
    requests: list[dict[str, str]] = field(default_factory=list)
    accepted: list[dict[str, Any]] = field(default_factory=list)
    bad_signatures: int = 0
    port: int = field(default_factory=free_port)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    async def hook(self, request: Request) -> JSONResponse:
        body = await request.body()
        headers = dict(request.headers)
        self.requests.append(headers)
        if self.hang:
            await asyncio.sleep(self.hang)
        if len(self.requests) <= self.fail_first:
            return JSONResponse({"no": "try again"}, status_code=500)
        if self.secret is not None:
            try:
                Webhook(self.secret).verify(body, headers)
            except Exception:
                self.bad_signatures += 1
                return JSONResponse({"error": "bad signature"}, status_code=401)
        self.accepted.append({"id": headers["webhook-id"], **json.loads(body)})
        return JSONResponse({"ok": True})

    def __enter__(self) -> Receiver:
        app = Starlette(routes=[Route("/hook", self.hook, methods=["POST"])])
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning",
                                                   timeout_graceful_shutdown=1))
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started and time.monotonic() < deadline:
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
