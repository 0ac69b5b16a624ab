"""Which Claude Code session a turn runs in, and how it is started, resumed, forked or recovered.

A task's session id is derived from the task id, so it never has to be looked up: resuming a task
resumes that session, a fork forks its source's session into its own, and `claude --resume ID` in
the workspace opens it by hand. The plan of a turn is a DBOS step, so a replay after a crash sees
the plan of the first run; whether the crashed run had already started is read from the session
on disk (the CLI writes each message there as it happens).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
import uuid
from pathlib import Path
from typing import Any

from pydantic_ai.messages import ModelMessage, ModelRequest, ModelResponse, TextPart, ToolCallPart, UserPromptPart

from ...core.schema import Task

SESSION_NAMESPACE = uuid.UUID("5b0c4a1e-7d2f-4c39-9a8e-2f6d1c3b9e70")
RECOVERY_PROMPT = ("Your previous run of this turn was interrupted (the server restarted). Continue the task "
                   "where you left off: do not redo steps that are already done.")


def session_id(task_id: str) -> str:
    return str(uuid.uuid5(SESSION_NAMESPACE, task_id))


def entry_uuid(message: ModelMessage) -> str | None:
    """The Claude Code transcript entry a stored message came from (kept in its metadata)."""
    value = (message.metadata or {}).get("claude_uuid")
    return value if isinstance(value, str) else None


def render_history(messages: list[ModelMessage]) -> str:
    """An earlier conversation as text, for a session that cannot be forked (its source ran natively)."""
    lines: list[str] = []
    for message in messages:
        if isinstance(message, ModelRequest):
            lines += [f"user: {p.content}" for p in message.parts
                      if isinstance(p, UserPromptPart) and isinstance(p.content, str)]
        elif isinstance(message, ModelResponse):
            for part in message.parts:
                if isinstance(part, TextPart) and part.content.strip():
                    lines.append(f"assistant: {part.content}")
                elif isinstance(part, ToolCallPart):
                    lines.append(f"assistant called {part.tool_name}({part.args_as_json_str()})")
    return "<earlier-conversation>\n" + "\n".join(lines) + "\n</earlier-conversation>"


def count_entries(sid: str, cwd: Path) -> int:
    """How many user/assistant messages the session has on disk (0 when it does not exist yet)."""
    from claude_agent_sdk import get_session_messages

    return len(get_session_messages(sid, directory=str(cwd)))


async def plan(task: Task, turn: int, cwd: Path, history: list[ModelMessage],
               source_is_claude: bool) -> dict[str, Any]:
    """How this turn starts: a new session, a resume of the task's own, or a fork of its source's."""
    sid = session_id(task.id)
    if turn > 1 or not task.forked_from:
        before = await asyncio.to_thread(count_entries, sid, cwd) if turn > 1 else 0
        return {"session_id": sid, "resume": sid if turn > 1 else None, "fork": False, "at": None,
                "entries": before, "preamble": None}
    at = next((u for u in map(entry_uuid, reversed(history)) if u), None)
    if source_is_claude and at:
        return {"session_id": sid, "resume": session_id(task.forked_from["task_id"]), "fork": True, "at": at,
                "entries": 0, "preamble": None}
    return {"session_id": sid, "resume": None, "fork": False, "at": None, "entries": 0,
            "preamble": render_history(history) if history else None}


# -- the CLI process of a running turn, so a restart can end one a crash left behind ---------------

def pid_file(run_dir: Path, task_id: str) -> Path:
    return run_dir / f"{task_id}.claude-code.pid"


def remember_process(run_dir: Path, task_id: str, pid: int | None) -> None:
    if pid is None:
        return
    run_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    with os.fdopen(os.open(pid_file(run_dir, task_id), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as f:
        f.write(str(pid))


def forget_process(run_dir: Path, task_id: str) -> None:
    pid_file(run_dir, task_id).unlink(missing_ok=True)


def end_leftover_process(run_dir: Path, task_id: str, sid: str, timeout: float = 2.0) -> bool:
    """Kills the CLI a crashed server left running on this session (it goes on with its turn on its own
    otherwise, writing into the session the recovery resumes). Only a process whose command line names
    the session is touched."""
    path = pid_file(run_dir, task_id)
    try:
        pid = int(path.read_text())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    except (OSError, ValueError):
        path.unlink(missing_ok=True)
        return False
    if sid not in cmdline:
        path.unlink(missing_ok=True)
        return False
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + timeout
    while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
        with contextlib.suppress(ChildProcessError, OSError):
            os.waitpid(pid, os.WNOHANG)
        time.sleep(0.02)
    path.unlink(missing_ok=True)
    return True
