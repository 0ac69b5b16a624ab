"""`bgagents`: launch and watch background agents from the terminal. Every command takes `--json`.

The commands live beside this module, each adding itself to the app (`app.py`): tasks, approvals and
isolated tasks (`decide.py`), the chat, dashboard, usage and profiles (`more.py`), webhooks, schedules and
`doctor`. This module keeps the ones that run processes: serve, worker, mcp, demo.
"""

from __future__ import annotations

import asyncio
import sys
from typing import Annotated

import typer

from . import decide, doctor, more, schedules, tasks, webhooks
from .app import MORE, START, app, in_order
from .common import JsonOpt, fail, load_settings

__all__ = ["app", "decide", "doctor", "main", "more", "tasks", "webhooks"]  # these modules add their commands


@app.command(rich_help_panel=START)
def serve(
    host: Annotated[str | None, typer.Option(help="Interface to bind (default 127.0.0.1).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default 8321).")] = None,
    workers: Annotated[int, typer.Option(help="Processes running tasks, this one included (PostgreSQL only).")] = 1,
    parent_fd: Annotated[int | None, typer.Option(hidden=True, help="Set by `bgagents demo`: stop when this pipe "
                                                                    "from the demo process closes.")] = None,
) -> None:
    """Run the API and the task workers, until SIGTERM or Ctrl-C."""
    from .listen import ListenError, listen_sockets

    settings = load_settings()
    host, port = host or settings.server.host, port or settings.server.port
    try:
        sockets = listen_sockets(host, port)  # before the slow start: a port in use is said at once
    except ListenError as exc:
        fail(str(exc), "cannot_serve")
    print(f"bgagents: starting the server on {host}:{port} (home {settings.home})…", file=sys.stderr, flush=True)
    from .serve import ServeError, exit_now, run_server

    try:
        run_server(settings, host, port, workers, parent_fd, sockets)
    except ServeError as exc:
        fail(str(exc), "cannot_serve")
    except KeyboardInterrupt:  # Ctrl-C: uvicorn re-raises it once the server has stopped
        exit_now(130)
    exit_now(0)


@app.command(rich_help_panel=START)
def worker(
    parent_fd: Annotated[int | None, typer.Option(hidden=True, help="Set by `serve --workers`: stop when this "
                                                                    "pipe from the serve process closes.")] = None,
) -> None:
    """Run tasks without the API (beside a server on the same PostgreSQL database), until SIGTERM or Ctrl-C."""
    from .serve import ServeError, run_worker

    settings = load_settings()
    try:
        run_worker(settings, parent_fd)
    except ServeError as exc:
        fail(str(exc), "cannot_serve")


@app.command(rich_help_panel=START)
def mcp(
    mode: Annotated[str, typer.Option(help="auto: the server at BGAGENTS_URL if one answers, else a runtime in "
                                           "this process; server: only the server; local: only this process.")]
    = "auto",
) -> None:
    """Serve the background-agent tools over MCP on stdio (for Claude Code, Cursor, OpenCode, …)."""
    from ..errors import BgAgentsError
    from ..mcp.stdio import serve_stdio

    if mode not in ("auto", "server", "local"):
        raise typer.BadParameter(f"'{mode}' is not one of auto, server, local", param_hint="--mode")
    settings = load_settings()
    try:
        asyncio.run(serve_stdio(settings, mode))  # type: ignore[arg-type]
    except BgAgentsError as exc:
        fail(exc.message, exc.code)
    except KeyboardInterrupt:
        pass


@app.command(rich_help_panel=START)
def demo(
    keep: Annotated[bool, typer.Option("--keep", help="Keep the server up after the agents finish.")] = False,
    agents: Annotated[int, typer.Option(help="How many demo agents to launch.", min=1, max=20)] = 3,
    port: Annotated[int | None, typer.Option(help="Port for the demo server (default: a free one).")] = None,
    json_mode: JsonOpt = False,
) -> None:
    """Try bgagents without a key: a server on a temporary home, a few demo agents, live progress."""
    from .demo import run_demo

    sys.exit(run_demo(keep=keep, agents=agents, port=port, json_mode=json_mode))


app.add_typer(schedules.app, rich_help_panel=MORE)
in_order()


def main() -> None:
    app(prog_name="bgagents")  # also as `python -m bgagents.cli.main`


if __name__ == "__main__":
    main()
