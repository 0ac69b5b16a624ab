"""What `bash` needs when the runtime starts: the processes a dead server left ended, and its sandbox."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import sqlalchemy as sa

from ..settings import Settings
from ..tools.processes import end_orphans
from ..tools.sandbox import Sandbox, choose

log = logging.getLogger("bgagents")


def secret_files(settings: Settings) -> list[Path]:
    """Files bash must never read: the token, the config, the webhook secret and the SQLite database with
    its -wal and -shm (hidden one by one where the home itself cannot be, e.g. when it is the workspace)."""
    home = settings.home.expanduser()
    files = [home / "token", home / "config.toml", home / "webhook-secret"]
    url = sa.engine.make_url(settings.sqlalchemy_url)
    if url.get_backend_name() == "sqlite" and url.database and url.database != ":memory:":
        files += [Path(url.database + suffix) for suffix in ("", "-wal", "-shm")]
    return files


async def prepare_bash(settings: Settings, workspace: Path) -> Sandbox | None:
    """Ends the tool processes of a server that died, then picks the sandbox (one line when there is none)."""
    ended = await asyncio.to_thread(end_orphans)
    if ended:
        log.info("ended %d tool process(es) left running by a server that stopped without ending them", ended)
    sandbox, note = await choose(settings.sandbox.mode, workspace, settings.home.expanduser(),
                                 secret_files(settings), settings.sandbox.network)
    if note:
        log.warning(note)
    return sandbox
