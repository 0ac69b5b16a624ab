"""`bgagents serve`: the API and the task workers in one process, with graceful shutdown."""

from __future__ import annotations

import logging
import sys

import uvicorn

from ..core.runtime import Runtime
from ..server import create_app
from ..settings import Settings


def run_server(settings: Settings, host: str, port: int) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    token = settings.resolve_token(create=True)
    assert token is not None
    runtime = Runtime(settings)
    app = create_app(runtime, token, host=host)
    where = "BGAGENTS_TOKEN" if settings.token else str(settings.home / "token")
    print(f"bgagents serving on http://{host}:{port} (home {settings.home}, token from {where})",
          file=sys.stderr, flush=True)
    # uvicorn turns SIGTERM/SIGINT into a lifespan shutdown, which drains the runtime at a step boundary.
    uvicorn.run(app, host=host, port=port, log_level="warning", timeout_graceful_shutdown=10)
