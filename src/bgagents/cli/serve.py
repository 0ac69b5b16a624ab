"""`bgagents serve` and `bgagents worker`: the API and the task workers, with graceful shutdown.

Several processes share the work only on PostgreSQL: each runs DBOS under its own executor id, the
concurrency limits hold across them, and the work of one that dies is taken over by the others.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
from typing import TYPE_CHECKING, NoReturn

import uvicorn

from .. import traces
from ..core.identity import DatabaseInUse
from ..errors import UnknownModel
from ..runtime import Runtime
from ..server import create_app
from ..server.stopping import StoppingServer
from ..settings import Settings

if TYPE_CHECKING:
    from ..channels.telegram import TelegramChannel
from ..core.bash_setup import server_files
from ..tools.private import keep_private
from ..tools.sandbox import SandboxUnavailable, choose
from .client import dashboard_url
from .listen import ListenError, listen_sockets


class ServeError(Exception):
    """A reason not to start, said in one line."""


def _claim(runtime: Runtime) -> None:
    try:
        runtime.claim()
        _require_sandbox(runtime.settings)
    except (DatabaseInUse, SandboxUnavailable) as exc:
        raise ServeError(exc.message) from None


def _require_sandbox(settings: Settings) -> None:
    """`[sandbox] mode = "on"` where bwrap cannot run: said in one line before the port is bound."""
    if settings.sandbox.mode == "on":
        workspace = settings.workspace_path
        workspace.mkdir(parents=True, exist_ok=True)
        asyncio.run(choose("on", server_files(settings), settings.sandbox.network))


def check_workers(settings: Settings, workers: int) -> None:
    if workers < 1:
        raise ServeError("--workers must be at least 1")
    if workers > 1 and settings.sqlalchemy_url.startswith("sqlite"):
        raise ServeError("--workers needs PostgreSQL: SQLite serves one process. Set BGAGENTS_DATABASE_URL "
                         "to a postgresql://… database (install .[postgres]), or run without --workers.")


def _start_workers(count: int) -> list[subprocess.Popen[bytes]]:
    """`count` `bgagents worker` processes with this process's environment (settings included).

    Each gets the read end of a pipe whose write end only this process holds, never writing to it: when
    this process ends, even by `kill -9`, the kernel closes the write end, the workers read end-of-file
    and stop (see `run_worker`), so no orphan keeps running tasks. A pipe rather than Linux's
    `PR_SET_PDEATHSIG`: no race between the fork and the call, no tie to the thread that forked, and it
    works on every POSIX system."""
    if count < 1:
        return []
    read_end, _write_end = os.pipe()  # both non-inheritable: no other child of this process holds them
    command = [sys.executable, "-m", "bgagents.cli.main", "worker", "--parent-fd", str(read_end)]
    try:
        return [subprocess.Popen(command, env=os.environ.copy(), pass_fds=(read_end,)) for _ in range(count)]
    finally:
        os.close(read_end)  # the write end stays open, unwritten, for the life of this process


def _stop_when_readable(fd: int, stop: asyncio.Event) -> None:
    """Stops the worker when its parent's pipe says end-of-file (the parent never writes to it)."""
    loop = asyncio.get_running_loop()

    def parent_gone() -> None:
        loop.remove_reader(fd)
        if not stop.is_set():
            print("bgagents worker: the serve process that started it is gone; stopping",
                  file=sys.stderr, flush=True)
            stop.set()

    loop.add_reader(fd, parent_gone)


def _stop_workers(procs: list[subprocess.Popen[bytes]], timeout: float = 30.0) -> None:
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    for proc in procs:
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def telegram_channel(settings: Settings) -> TelegramChannel | None:
    """The Telegram channel when `[telegram] token` is set (a runtime extension)."""
    if settings.telegram.token is None:
        return None
    try:
        from ..channels.telegram import TelegramChannel
    except ImportError:
        raise SystemExit("[telegram] token is set but the Telegram channel is not installed: "
                         "pip install 'bgagents[telegram]'") from None
    return TelegramChannel(settings.telegram)


def model_warning(runtime: Runtime) -> str | None:
    """Said at start when no default model is set, or it cannot be used: else a person finds out at launch."""
    name = runtime.settings.model
    if not name:
        chat = "" if runtime.settings.conversation.model else ", and `bgagents chat` has no main agent"
        return (f"no default model is set: launches need --model{chat}. "
                "Set BGAGENTS_MODEL (or `model` in config.toml) where this server runs, e.g. BGAGENTS_MODEL=demo "
                "for the offline demo model.")
    try:
        runtime.models.check(name)  # a pydantic-ai model, or a runner's (claude-code:…)
    except UnknownModel as exc:
        return f"the default model cannot be used: {exc.message}"
    return None


def _logging() -> None:
    """bgagents' own lines from INFO (a task's start and end, …); other libraries' only from WARNING: their
    INFO chatter (a line per model request, a session manager starting) is not the user's business."""
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("bgagents").setLevel(logging.INFO)


def _stop_server_when_readable(fd: int) -> None:
    """`serve` started by another process (`bgagents demo`): when that process is gone, even by `kill -9`, its
    pipe reads end-of-file and this server stops as on SIGTERM (uvicorn's graceful shutdown owns the loop)."""
    def watch() -> None:
        os.read(fd, 1)  # the parent never writes: this returns at end-of-file, when the parent is gone
        print("bgagents serve: the process that started it is gone; stopping", file=sys.stderr, flush=True)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="bgagents-parent-watch", daemon=True).start()


def run_server(settings: Settings, host: str, port: int, workers: int = 1, parent_fd: int | None = None,
               sockets: list[socket.socket] | None = None) -> None:
    """The API and a task worker in this process, and `workers - 1` worker processes beside it, serving on
    `sockets` (bound by the caller), else on `host`:`port`."""
    check_workers(settings, workers)
    keep_private()
    if sockets is None:
        try:
            sockets = listen_sockets(host, port)
        except ListenError as exc:
            raise ServeError(str(exc)) from None
    _logging()
    token = settings.resolve_token(create=True)
    assert token is not None
    tracer_provider = traces.provider_from_env()
    telegram = telegram_channel(settings)
    runtime = Runtime(settings, tracer_provider=tracer_provider, extensions=[telegram] if telegram else [])
    _claim(runtime)  # before the runtime starts: a second server on the same SQLite home stops here
    app = create_app(runtime, token, host=host)
    if telegram is not None and telegram.webhook:
        from ..channels.telegram.webhook import webhook_router

        app.include_router(webhook_router(telegram))
    warning = model_warning(runtime)
    if warning:
        print(f"warning: {warning}", file=sys.stderr, flush=True)
    where = "BGAGENTS_TOKEN" if settings.token else str(settings.home / "token")
    more = f", {workers - 1} more worker process(es)" if workers > 1 else ""
    shown = f"http://{'127.0.0.1' if host in ('0.0.0.0', '::', '') else host}:{port}"

    def ready() -> None:
        # the address that logs in carries the token: on a terminal only, never into a log file
        dashboard = dashboard_url(shown, token) if sys.stderr.isatty() else f"{shown}/ ('bgagents open' logs in)"
        print(f"bgagents serving on http://{host}:{port} (home {settings.home}, token from {where}{more})\n"
              f"dashboard: {dashboard}", file=sys.stderr, flush=True)

    def stopping() -> None:
        print("bgagents: stopping; running tasks stop at their next step and go on at the next start",
              file=sys.stderr, flush=True)

    procs = _start_workers(workers - 1)
    cleaned: list[bool] = []

    def stopped() -> None:
        """What this process started, and its traces: once the runtime has stopped (uvicorn then re-raises a
        SIGTERM it caught, which ends the process before a `finally` here could run)."""
        if not cleaned:
            cleaned.append(True)
            for sock in sockets:
                sock.close()
            _stop_workers(procs)
            traces.shutdown(tracer_provider)
            logging.shutdown()

    if parent_fd is not None:
        _stop_server_when_readable(parent_fd)
    try:
        # uvicorn turns SIGTERM/SIGINT into a lifespan shutdown, which drains the runtime at a step boundary.
        # The stdlib loop, not uvloop where it is installed: uvloop starts each bash call with fork() of the
        # whole server (~10x slower than the stdlib's vfork at a few hundred MB, the loop blocked meanwhile).
        # uvicorn's lines through this process's logging (its format, no log config of uvicorn's own)
        config = uvicorn.Config(app, log_level="warning", log_config=None, timeout_graceful_shutdown=10,
                                loop="asyncio", access_log=settings.server.access_log)
        if settings.server.access_log:
            logging.getLogger("uvicorn.access").setLevel(logging.INFO)
        StoppingServer(config, app.state.stopping, on_ready=ready, on_stop=stopping, on_stopped=stopped).run(
            sockets=sockets)
    finally:
        stopped()


def exit_now(code: int) -> NoReturn:
    """Ends a stopped server's process at once. Everything it holds is closed or flushed by then; Python's
    own teardown of the ~200k objects it imported would take 0.7 s of CPU more (2.5 s on a loaded machine)
    and do nothing a stopped server needs (a SIGTERM, re-raised by uvicorn, skips it too)."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def run_worker(settings: Settings, parent_fd: int | None = None) -> None:
    """Task workers without the API, until SIGTERM or Ctrl-C (which stop at a step boundary), or, for a
    worker that `serve --workers` started, until that process is gone (`parent_fd` reads end-of-file)."""
    keep_private()
    _logging()
    tracer_provider = traces.provider_from_env()
    runtime = Runtime(settings, tracer_provider=tracer_provider)
    _claim(runtime)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        if parent_fd is not None:
            _stop_when_readable(parent_fd, stop)
        async with runtime:
            print(f"bgagents worker {runtime.executor_id} running tasks (home {settings.home})",
                  file=sys.stderr, flush=True)
            await stop.wait()

    try:
        asyncio.run(main())
    finally:
        traces.shutdown(tracer_provider)
