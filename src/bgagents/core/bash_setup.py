"""What `bash` and the file tools need when the runtime starts: the processes a dead server left ended, the
server's own files (which no tool may reach) and the sandbox."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import sqlalchemy as sa

from ..settings import Settings
from ..tools.private import ServerFiles
from ..tools.processes import end_orphans
from ..tools.sandbox import Sandbox, choose

log = logging.getLogger("bgagents")


def secret_files(settings: Settings) -> list[Path]:
    """The server's files that may lie outside its home: a SQLite database with its -wal, -shm, -journal and
    lock files (everything else the server keeps is in the home)."""
    url = sa.engine.make_url(settings.sqlalchemy_url)
    if url.get_backend_name() == "sqlite" and url.database and url.database != ":memory:":
        return [Path(url.database + suffix) for suffix in ("", "-wal", "-shm", "-journal", ".lock")]
    return []


def server_files(settings: Settings) -> ServerFiles:
    return ServerFiles.of(settings.home, settings.workspace_path, secret_files(settings), user_home=Path.home())


async def prepare_bash(settings: Settings, server: ServerFiles) -> Sandbox | None:
    """Ends the tool processes of a server that died, then picks the sandbox (one line when there is none)."""
    ended = await asyncio.to_thread(end_orphans)
    if ended:
        log.info("ended %d tool process(es) left running by a server that stopped without ending them", ended)
    sandbox, note = await choose(settings.sandbox.mode, server, settings.sandbox.network, settings.sandbox.read_only)
    if note:
        log.warning(note)
    return sandbox
