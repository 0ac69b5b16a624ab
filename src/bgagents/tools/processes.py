"""Tool processes never outlive their reason to run: they carry a mark, and the mark finds them.

Every process a tool starts gets `BGAGENTS_TOOL_RUN=<server>:<run>` in its environment, inherited by
its children and theirs, also by those that leave the process group. The mark is the durable record:
it lives exactly as long as the processes do, with no file to get out of date. `<server>` is the
server process's pid and start time, so a restarted server finds the processes of the one that died
(`end_orphans`) without touching those of another live server on the same machine.
"""

from __future__ import annotations

import contextlib
import os
import signal
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

MARK = "BGAGENTS_TOOL_RUN"


def _start_time(pid: int) -> str | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]  # field 22: start time in clock ticks after boot


def server_id(pid: int | None = None) -> str:
    pid = os.getpid() if pid is None else pid
    return f"{pid}.{_start_time(pid) or 0}"


def new_run() -> str:
    """The mark of one tool call's processes."""
    return f"{server_id()}:{uuid.uuid4().hex[:12]}"


def _marked() -> Iterator[tuple[int, str]]:
    """(pid, mark) of every process carrying a mark that this user may read."""
    needle = f"\0{MARK}=".encode()
    own = os.getpid()
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit() or int(entry.name) == own:
            continue
        try:
            environ = b"\0" + Path(entry.path, "environ").read_bytes()
        except OSError:
            continue
        at = environ.find(needle)
        if at >= 0:
            end = environ.find(b"\0", at + 1)
            yield int(entry.name), environ[at + len(needle):end if end >= 0 else None].decode(errors="replace")


def _kill(pids: list[int]) -> int:
    killed = 0
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
            killed += 1
    return killed


def end_run(run: str) -> int:
    """Kills every process of one tool call, also those that left its process group."""
    return _kill([pid for pid, mark in _marked() if mark == run])


def _server_alive(server: str) -> bool:
    pid, _, started = server.partition(".")
    return pid.isdigit() and _start_time(int(pid)) == started


def end_orphans(alive: Callable[[str], bool] = _server_alive) -> int:
    """Kills the tool processes of servers that are gone (e.g. after `kill -9`); run at start."""
    if not Path("/proc/self/environ").exists():
        return 0
    return _kill([pid for pid, mark in _marked() if not alive(mark.partition(":")[0])])
